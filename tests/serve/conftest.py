"""Serve fixtures: queue URLs for both backends and S3 settings for worker processes."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest


@pytest.fixture
def any_queue_url(queue_url: str) -> str:
    """A queue URL on each backend (tests/conftest.py's ``queue_url``)."""
    return queue_url


@pytest.fixture
def s3_env(stack: Any) -> dict[str, Any]:
    """S3 settings (fresh bucket on the session stack) as the JSON worker processes read."""
    from nomad.storage import Storage

    settings = stack.s3_settings(f"serve-{uuid.uuid4().hex[:10]}")
    Storage(settings).ensure_bucket()
    return {"NOMAD_TEST_S3": json.dumps(dataclasses.asdict(settings))}
