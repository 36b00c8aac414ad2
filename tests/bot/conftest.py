"""Bot test fixtures: the Bot API stub, a real queue, real S3, and a running PTB Application.

The bot under test is the real python-telegram-bot ``Application`` (HTTP,
long polling, file downloads, rate limiter) talking to ``BotApiStub`` — a
Bot API protocol double on loopback. Storage is the real embedded S3 stack
(session fixture ``storage``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.config.schema import BotConfig
from nomad.queue.base import JobQueue
from nomad.testing.botapi import BotApiStub

ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000  # test modules repeat these ids


def _load_scaffold() -> Any:
    """Import tests/bot/scaffold.py by path (tests/ is not a package; import-mode=importlib)."""
    import importlib.util
    import sys

    name = "_nomad_bot_scaffold"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("scaffold.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


scaffold = _load_scaffold()


@pytest.fixture
async def botapi() -> AsyncIterator[BotApiStub]:
    """A fresh Bot API stub on a free loopback port."""
    async with BotApiStub() as stub:
        yield stub


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    """The real embedded-default queue (SQLite in tmp_path), quotas 2 in flight / 5 a day."""
    try:
        from nomad.queue import Limits, open_queue
    except ImportError:  # scaffolding until the real queue lands
        q: JobQueue = scaffold.MemoryQueue(in_flight=2, per_day=5)
    else:
        q = open_queue(None, tmp_path, limits=Limits(in_flight=2, per_day=5))
    yield q
    q.close()


@pytest.fixture
def workflows() -> Callable[[str], Any]:
    """The real workflow library (nomad.workflows) the bot validates options against."""
    try:
        from nomad.workflows import load_workflow
    except ImportError:  # scaffolding until the workflow library lands
        return scaffold.StandInWorkflows()
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
        from bot.app import build_application
        from bot.deps import BotDeps
        from bot.run import running

        webhook = overrides.pop("webhook", None)
        deps = BotDeps(
            config=overrides.pop("config", bot_config),
            queue=queue,
            storage=overrides.pop("storage", storage),
            load_workflow=overrides.pop("load_workflow", workflows),
            poll_interval=0.05,
            **overrides,
        )
        app = build_application(
            deps, token=botapi.token, base_url=botapi.base_url, base_file_url=botapi.base_file_url
        )
        async with running(app, poll_timeout=1, webhook=webhook) as rt:
            yield rt

    return run


async def settle(botapi: BotApiStub) -> None:
    """Wait (bounded) until the bot has confirmed every update the test sent."""
    for _ in range(200):
        if botapi.pending_updates() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("bot never fetched the updates")
