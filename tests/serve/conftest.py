"""Serve fixtures: queue URLs for both backends and S3 settings for worker processes."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def any_queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A queue URL on each backend; the PostgreSQL tables are emptied afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/serve-q.db"
        return
    dsn = request.getfixturevalue("pg_dsn")
    yield dsn
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF to_regclass('jobs') IS NOT NULL THEN "
            "TRUNCATE jobs, state; END IF; END $$"
        )


@pytest.fixture
def s3_env(stack: Any) -> dict[str, Any]:
    """S3 settings (fresh bucket on the session stack) as the JSON worker processes read."""
    from nomad.storage import Storage

    settings = stack.s3_settings(f"serve-{uuid.uuid4().hex[:10]}")
    Storage(settings).ensure_bucket()
    return {"NOMAD_TEST_S3": json.dumps(dataclasses.asdict(settings))}
