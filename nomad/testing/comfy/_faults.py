"""Fault injection: fail, die or drop sockets at a node; hold a sampler at a step.

Each is deterministic (keyed by node id or step number), so tests of error
paths never depend on timing.
"""

from __future__ import annotations

import asyncio
import contextlib

from nomad.testing.comfy._sockets import _Sockets


class _Died(Exception):
    """The double was told to die mid-run."""


class _Interrupted(Exception):
    def __init__(self, node: str) -> None:
        self.node = node


class _Failed(Exception):
    def __init__(self, node: str) -> None:
        self.node = node


class _Faults(_Sockets):
    """``fail_at_node`` (execution_error), ``die_at_node`` (the server closes every socket and
    stops listening), ``drop_ws_at_node`` (sockets closed, the prompt still completes),
    ``hold_at_step`` (the sampler waits there until :meth:`release` or an interrupt)."""

    fail_at_node: str | None
    die_at_node: str | None
    drop_ws_at_node: str | None
    hold_at_step: int | None
    hold_timeout: float

    async def _before_node(self, nid: str) -> None:
        """Faults that strike before a node runs (an interrupt also lands here)."""
        if self._interrupt:
            raise _Interrupted(nid)
        if nid == self.die_at_node:
            self.dead = True
            raise _Died()
        if nid == self.drop_ws_at_node:
            await self._close_sockets()

    def _after_executing(self, nid: str) -> None:
        """Faults that strike once the node has started (``execution_error``)."""
        if nid == self.fail_at_node:
            raise _Failed(nid)

    async def _at_step(self, step: int) -> None:
        """Hold at ``hold_at_step`` until released (or interrupted; bounded by hold_timeout)."""
        if step != self.hold_at_step:
            return
        assert self._release is not None
        self.held = True
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.hold_timeout):  # keeps outside cancels
                    await self._release.wait()
        finally:
            self.held = False
        self._release.clear()
