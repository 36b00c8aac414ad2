"""Queue fixtures: every test here runs on both backends (a SQLite file and a fresh PostgreSQL DB)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import open_queue
from nomad.queue._sql import SqlQueue


class Clock:
    """An injected clock: tests move time explicitly instead of sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    """A manual clock shared by the queue under test."""
    return Clock()


@pytest.fixture
def make_queue(queue_url: str, tmp_path: Path, clock: Clock) -> Iterator[Callable[..., SqlQueue]]:
    """Factory opening queues on the backend under test (closed afterwards)."""
    opened: list[SqlQueue] = []

    def make(**kw: Any) -> SqlQueue:
        kw.setdefault("clock", clock)
        q = open_queue(queue_url, tmp_path, **kw)
        assert isinstance(q, SqlQueue)
        opened.append(q)
        return q

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def queue(make_queue: Callable[..., SqlQueue]) -> SqlQueue:
    """One queue on the backend under test, with the injected clock and a 60 s lease."""
    return make_queue(lease_seconds=60.0)
