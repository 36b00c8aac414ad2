"""The ``/ws`` side: connections per client id, JSON and binary frames, dropping sockets."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from nomad.testing.comfy._state import _State


class _Sockets(_State):
    """WebSocket connections and the frames sent to them (ComfyUI's ``PromptServer.send``)."""

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets.setdefault(sid, set()).add(ws)
        try:
            await ws.send_json({"type": "status", "data": {"status": self._status(), "sid": sid}})
            async for msg in ws:
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._sockets.get(sid, set()).discard(ws)
        return ws

    def _status(self) -> dict[str, Any]:
        remaining = len(self._pending) + (1 if self._running else 0)
        return {"exec_info": {"queue_remaining": remaining}}

    async def _send(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        targets = [
            ws for s, group in self._sockets.items() if sid is None or s == sid for ws in group
        ]
        for ws in targets:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": kind, "data": data})

    async def _send_bytes(self, payload: bytes, sid: str | None) -> None:
        for ws in list(self._sockets.get(sid or "", ())):
            with contextlib.suppress(Exception):
                await ws.send_bytes(payload)

    async def _close_sockets(self) -> None:
        for group in list(self._sockets.values()):
            for ws in list(group):
                with contextlib.suppress(Exception):
                    await ws.close(code=1011, message=b"FakeComfy closed the socket")
        self._sockets.clear()
