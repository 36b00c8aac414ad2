"""Bot test fixtures: the Bot API stub, a real queue, real S3, and a running PTB Application.

The bot under test is the real python-telegram-bot ``Application`` (HTTP,
long polling, file downloads, rate limiter) talking to ``BotApiStub`` — a
Bot API protocol double on loopback. Storage is the real embedded S3 stack
(session fixture ``storage``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.config.schema import BotConfig
from nomad.queue.base import JobQueue
from nomad.testing.botapi import BotApiStub

ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000  # test modules repeat these ids


@pytest.fixture
async def botapi() -> AsyncIterator[BotApiStub]:
    """A fresh Bot API stub on a free loopback port."""
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobQueue]:
    """The real queue: embedded-default SQLite, or PostgreSQL when parametrized indirectly.

    Quotas: 2 jobs in flight, 5 a day per user.
    """
    from nomad.queue import Limits, open_queue

    backend = getattr(request, "param", "sqlite")
    url = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    q = open_queue(url, tmp_path, limits=Limits(in_flight=2, per_day=5))
    yield q
    q.close()
    if url is not None:  # the database is shared by the run: leave it empty
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("TRUNCATE jobs, state")


@pytest.fixture
def workflows() -> Callable[[str], Any]:
    """The real workflow library (nomad.workflows) the bot validates options against."""
    from nomad.workflows import load_workflow

    return load_workflow


@pytest.fixture
def bot_config() -> BotConfig:
    """Alice and Bob are allowlisted; ADMIN is an admin; Mallory is neither."""
    return BotConfig(allowlist=[ALICE, BOB], admins=[ADMIN])


@pytest.fixture
def make_bot(
    botapi: BotApiStub, queue: JobQueue, storage: Any, workflows: Any, bot_config: BotConfig
) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """Start the real PTB Application against the stub; yields its BotRuntime."""

    @contextlib.asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Any]:
        from nomad_bot.app import build_application
        from nomad_bot.deps import BotDeps
        from nomad_bot.run import running

        webhook = overrides.pop("webhook", None)
        app_kwargs = overrides.pop("app_kwargs", {})
        overrides.setdefault("poll_interval", 0.05)
        overrides.setdefault("edit_interval", 0.0)  # pacing has its own simulated-time tests
        deps = BotDeps(
            config=overrides.pop("config", bot_config),
            queue=queue,
            storage=overrides.pop("storage", storage),
            load_workflow=overrides.pop("load_workflow", workflows),
            **overrides,
        )
        app = build_application(
            deps,
            token=botapi.token,
            base_url=botapi.base_url,
            base_file_url=botapi.base_file_url,
            **app_kwargs,
        )
        async with running(app, poll_timeout=1, webhook=webhook) as rt:
            yield rt

    return run
