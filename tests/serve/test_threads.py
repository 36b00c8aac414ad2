"""DaemonThreads: blocking launches that can be awaited, called off at once, and never hold exit."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nomad.serve.threads import DaemonThreads


async def test_result_and_error_reach_the_awaiting_task() -> None:
    """The call's value is returned and its exception re-raised in the awaiting task."""
    threads = DaemonThreads()
    assert await threads.run(lambda: 42) == 42

    def boom() -> None:
        raise ValueError("launch failed")

    with pytest.raises(ValueError, match="launch failed"):
        await threads.run(boom)
    assert threads.running == 0


async def test_cancel_returns_at_once_and_join_is_bounded() -> None:
    """Cancelling the await does not wait for the call; join waits only as long as asked, the
    thread is a daemon (exit never waits for it), and a finished call is forgotten."""
    threads = DaemonThreads()
    release = threading.Event()
    started = threading.Event()

    def blocking() -> str:
        started.set()
        release.wait(30)
        return "done"

    task = asyncio.create_task(threads.run(blocking, name="launch x"))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert threads.running == 1
    assert all(t.daemon for t in threading.enumerate() if t.name == "launch x")
    assert await threads.join(0.05) is False
    release.set()
    assert await threads.join(10) is True and threads.running == 0
