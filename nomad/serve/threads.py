"""Blocking work that must never hold ``nomad serve`` open: daemon threads with a bounded join.

``asyncio.to_thread`` runs on the loop's default executor, and ``asyncio.run``
waits for that executor at exit: a launch stuck in a 15-minute health wait or a
provider call kept a SIGTERMed serve alive for minutes. Launches run here
instead: the awaiting task can be cancelled at once, shutdown joins the
threads for a bounded time (so a launch that was called off can still tear
down what it started), and whatever is left dies with the process — the
cluster ledger and the node's dead-man's switch take it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class DaemonThreads:
    """Runs blocking calls in daemon threads and remembers the ones still running."""

    def __init__(self) -> None:
        self._running: set[threading.Thread] = set()

    async def run(self, fn: Callable[[], T], *, name: str = "nomad-blocking") -> T:
        """``await`` ``fn()`` from a daemon thread; cancelling the await does not stop ``fn``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def settle(ok: bool, value: object) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(value)  # type: ignore[arg-type]
            else:
                fut.set_exception(value)  # type: ignore[arg-type]

        def target() -> None:
            try:
                result: object = fn()
                ok = True
            except BaseException as exc:  # handed to the awaiting task
                result, ok = exc, False
            finally:
                self._running.discard(threading.current_thread())
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody awaits any more
                loop.call_soon_threadsafe(settle, ok, result)

        thread = threading.Thread(target=target, name=name, daemon=True)
        self._running.add(thread)
        thread.start()
        return await fut

    @property
    def running(self) -> int:
        return len(self._running)

    async def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every thread; True when none is left running."""
        deadline = time.monotonic() + timeout_s
        for thread in list(self._running):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.to_thread(thread.join, left)
        return not self._running
