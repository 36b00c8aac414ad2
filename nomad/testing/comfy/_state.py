"""The state every part of the double shares (declared once; FakeComfy.__init__ fills it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class _Job:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    extra: dict[str, Any]
    outputs: list[str]
    # every node's progress_state entry so far: real ComfyUI sends them all in each frame
    states: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra, self.outputs]


class _State:
    """Attribute declarations only: the mixins below read and write these."""

    host: str
    port: int
    gpu_name: str
    vram_gb: float
    delay: float
    load_delay: float
    cpu: bool
    models: dict[str, list[str]] | None
    object_info: dict[str, Any] | None
    object_info_requests: int
    uploads: dict[str, bytes]
    prompts: list[dict[str, Any]]
    history: dict[str, dict[str, Any]]
    interrupts: list[str | None]
    deleted: list[str]
    files: dict[tuple[str, str, str], bytes]
    loads: list[str]
    dead: bool
    held: bool
    _closing: bool
    _pending: list[_Job]
    _running: _Job | None
    _number: int
    _counters: dict[str, int]
    _cache: dict[str, dict[str, Any]]
    _sockets: dict[str, set[web.WebSocketResponse]]
    _interrupt: bool
    _release: asyncio.Event | None
    _wake: asyncio.Event | None

    def release(self) -> None:
        """Let a sampler held at ``hold_at_step`` continue."""
        if self._release is not None:
            self._release.set()

    async def aclose(self) -> None:
        raise NotImplementedError
