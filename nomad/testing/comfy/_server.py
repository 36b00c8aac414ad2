"""FakeComfy itself: construction, start/stop (in-process or in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from nomad.testing.comfy._routes import _Routes
from nomad.testing.comfy._state import _Job


class FakeComfy(_Routes):
    """A ComfyUI protocol double (see the package docstring). Not ComfyUI; runs no model."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        gpu_name: str = "FakeComfy GPU (protocol double)",
        vram_gb: float = 24.0,
        delay: float = 0.0,
        models: Mapping[str, Iterable[str]] | None = None,
        fail_at_node: str | None = None,
        die_at_node: str | None = None,
        drop_ws_at_node: str | None = None,
        hold_at_step: int | None = None,
        hold_timeout: float = 30.0,
        object_info: Mapping[str, Any] | None = None,
        cpu: bool = False,
        load_delay: float = 0.0,
    ) -> None:
        self.host, self.port = host, port
        self.gpu_name, self.vram_gb, self.delay = gpu_name, vram_gb, delay
        self.load_delay = load_delay  # seconds per model file a loader node reads (not cached)
        self.loads: list[str] = []  # every model file loaded, "folder/file", in order
        self.models = None if models is None else {k: list(v) for k, v in models.items()}
        self.fail_at_node, self.die_at_node = fail_at_node, die_at_node
        self.drop_ws_at_node, self.hold_at_step, self.hold_timeout = (
            drop_ws_at_node,
            hold_at_step,
            hold_timeout,
        )
        self.cpu = cpu  # /system_stats as a CPU-only ComfyUI (--cpu) reports it
        self.object_info = None if object_info is None else dict(object_info)
        self.object_info_requests = 0  # how often /object_info was fetched
        self.uploads: dict[str, bytes] = {}
        self.prompts: list[dict[str, Any]] = []  # every graph accepted by /prompt, in order
        self.history: dict[str, dict[str, Any]] = {}
        self.interrupts: list[str | None] = []  # every POST /interrupt: its prompt_id or None
        self.deleted: list[str] = []  # every prompt id a POST /queue asked to delete
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.dead = False
        self.held = False  # a sampler is waiting at hold_at_step right now
        self._closing = False
        self._pending: list[_Job] = []
        self._running: _Job | None = None
        self._number = 0
        self._counters: dict[str, int] = {}
        self._cache: dict[str, dict[str, Any]] = {}
        self._sockets: dict[str, set[web.WebSocketResponse]] = {}
        self._interrupt = False
        self._release: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeComfy:
        """Bind (port 0 picks a free port), start the executor; returns self."""
        self._wake, self._release, self._stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()
        app = web.Application(middlewares=[self._origin_check], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._worker = asyncio.create_task(self._work())
        return self

    async def aclose(self) -> None:
        """Stop serving and close every socket (idempotent)."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        worker, self._worker = self._worker, None
        if worker is not None and worker is not asyncio.current_task():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        await self._close_sockets()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._stopped is not None:
            self._stopped.set()

    async def __aenter__(self) -> FakeComfy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> FakeComfy:
        """Start a double on its own event loop in a daemon thread (for sync tests)."""
        fc = cls(**kwargs)
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            fc._loop = loop
            try:
                loop.run_until_complete(fc.start())
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                ready.set()
                return
            ready.set()
            assert fc._stopped is not None
            loop.run_until_complete(fc._stopped.wait())
            loop.close()

        fc._thread = threading.Thread(target=main, name="FakeComfy", daemon=True)
        fc._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeComfy did not start within 10 s")
        if errors:
            raise errors[0]
        return fc

    def stop(self) -> None:
        """Stop a double started with :meth:`start_in_thread`."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("stop() is for start_in_thread(); use `await aclose()` otherwise")
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.aclose(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(10)
        self._thread.join(10)
