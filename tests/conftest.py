"""Session-wide fixtures: a fresh PostgreSQL database per run, the embedded stack.

Integration tests use real local services on loopback only. Fixtures specific
to one area live in that area's own conftest.py (tests/<area>/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN_DSN = os.environ.get("NOMAD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A brand-new PostgreSQL database for this test run, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"nomad_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment fault
        pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
