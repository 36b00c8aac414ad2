"""Batch fixtures: images made with Pillow, a stand-in worker that completes jobs on real S3."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import open_queue
from nomad.queue.base import JobQueue


def noise_png(size: int = 32, seed: int = 1) -> bytes:
    """A PNG of random pixels (what a working model's output looks like to the blank check)."""
    from PIL import Image

    rnd = random.Random(seed)
    img = Image.frombytes(
        "RGB", (size, size), bytes(rnd.randrange(256) for _ in range(size * size * 3))
    )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def flat_png(size: int = 32, value: int = 128) -> bytes:
    """A uniform grey PNG (a broken model's output)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def finish(queue: JobQueue, storage: Any, job_id: str, data: bytes) -> str:
    """Play the worker: lease ``job_id``, store its output like serve does, complete it."""
    leased = queue.lease("test-worker")
    assert leased is not None and leased.id == job_id and leased.lease_token
    key = f"outputs/{job_id}/0.png"
    storage.put_bytes(key, data)
    assert queue.complete(job_id, leased.lease_token, outputs=[key], cost=0.01)
    return key


@pytest.fixture
def sqlite_queue(tmp_path: Path) -> Iterator[JobQueue]:
    """The embedded SQLite queue in a fresh folder."""
    q = open_queue(None, tmp_path)
    yield q
    q.close()


@pytest.fixture
def both_queue(queue_url: str, tmp_path: Path) -> Iterator[JobQueue]:
    """A queue on each backend (SQLite file, fresh PostgreSQL database)."""
    q = open_queue(queue_url, tmp_path)
    yield q
    q.close()
