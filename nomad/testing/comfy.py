"""FakeComfy — a ComfyUI HTTP/WebSocket *protocol double* on loopback.

It is not ComfyUI and runs no model. It speaks the wire protocol observed on
a real ComfyUI 0.28 (routes, ``/ws`` message sequence, 400 validation shapes,
``/history``, ``/view``, the Origin check, ``/api/…`` aliases) and "executes"
a graph by walking it from its output nodes, producing small deterministic
files whose bytes derive from the node inputs (seed, prompt) and from any
uploaded input image, so tests can check what went in came out.

Use it in-process (``async with FakeComfy() as fc: fc.url``), from sync tests
(``fc = FakeComfy.start_in_thread(); …; fc.stop()``) or as a process standing
in for ComfyUI::

    python -m nomad.testing.comfy --host 127.0.0.1 --port 8188 --delay 0.05

Fault injection: ``fail_at_node`` (execution_error), ``die_at_node`` (the
server closes every socket and stops listening), ``drop_ws_at_node`` (sockets
are closed but the prompt completes in ``/history``), ``hold_at_step`` (the
sampler waits there until :meth:`release` or an interrupt: deterministic
interrupt tests without timing). ``interrupts`` and ``deleted`` record every
``/interrupt`` and queue deletion it was asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import signal
import struct
import threading
import time
import urllib.parse
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["NODE_SPECS", "FakeComfy", "NodeSpec", "png_bytes", "png_text"]


@dataclass(frozen=True)
class NodeSpec:
    """What the double knows about one node class (a tiny slice of /object_info)."""

    required: tuple[str, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)  # input name -> model folder
    output: str | None = None  # "image" | "temp" | "video" | "webp" for output nodes
    minimum: Mapping[str, float] = field(default_factory=dict)


_LOADERS = {
    "UNETLoader": NodeSpec(("unet_name", "weight_dtype"), {"unet_name": "diffusion_models"}),
    "DualCLIPLoader": NodeSpec(
        ("clip_name1", "clip_name2", "type"),
        {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    ),
    "CLIPLoader": NodeSpec(("clip_name", "type"), {"clip_name": "text_encoders"}),
    "VAELoader": NodeSpec(("vae_name",), {"vae_name": "vae"}),
    "CheckpointLoaderSimple": NodeSpec(("ckpt_name",), {"ckpt_name": "checkpoints"}),
    "LoraLoaderModelOnly": NodeSpec(
        ("model", "lora_name", "strength_model"), {"lora_name": "loras"}
    ),
    "LoraLoader": NodeSpec(("model", "clip", "lora_name"), {"lora_name": "loras"}),
}
_SAMPLING = {
    "KSampler": NodeSpec(
        (
            "model",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "denoise",
        ),
        minimum={"steps": 1, "cfg": 0.0, "denoise": 0.0},
    ),
    "KSamplerAdvanced": NodeSpec(
        (
            "model",
            "add_noise",
            "noise_seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "positive",
            "negative",
            "latent_image",
            "start_at_step",
            "end_at_step",
            "return_with_leftover_noise",
        ),
        minimum={"steps": 1},
    ),
}
_OTHER = {
    "CLIPTextEncode": NodeSpec(("text", "clip")),
    "CLIPTextEncodeFlux": NodeSpec(("clip", "clip_l", "t5xxl", "guidance")),
    "ConditioningZeroOut": NodeSpec(("conditioning",)),
    "EmptySD3LatentImage": NodeSpec(
        ("width", "height", "batch_size"), minimum={"width": 16, "height": 16}
    ),
    "EmptyLatentImage": NodeSpec(
        ("width", "height", "batch_size"), minimum={"width": 16, "height": 16}
    ),
    "EmptyHunyuanLatentVideo": NodeSpec(
        ("width", "height", "length", "batch_size"), minimum={"length": 1}
    ),
    "VAEDecode": NodeSpec(("samples", "vae")),
    "VAEEncode": NodeSpec(("pixels", "vae")),
    "LoadImage": NodeSpec(("image",)),
    "ImageInvert": NodeSpec(("image",)),
    "ImageBlur": NodeSpec(("image", "blur_radius", "sigma")),
    "ImageScale": NodeSpec(("image", "upscale_method", "width", "height", "crop")),
    "EmptyImage": NodeSpec(("width", "height", "batch_size", "color")),
    "CFGNorm": NodeSpec(("model", "strength")),
    "ModelSamplingAuraFlow": NodeSpec(("model", "shift")),
    "ModelSamplingSD3": NodeSpec(("model", "shift")),
    "FluxGuidance": NodeSpec(("conditioning", "guidance")),
    "FluxKontextImageScale": NodeSpec(("image",)),
    "TextEncodeQwenImageEditPlus": NodeSpec(("clip", "prompt")),
    "PrimitiveInt": NodeSpec(("value",)),
    "PrimitiveFloat": NodeSpec(("value",)),
    "PrimitiveBoolean": NodeSpec(("value",)),
    "PrimitiveStringMultiline": NodeSpec(("value",)),
    "ComfySwitchNode": NodeSpec(("switch", "on_false", "on_true")),
    "ComfyMathExpression": NodeSpec(("expression",)),
    "CreateVideo": NodeSpec(("images", "fps")),
    "SaveImage": NodeSpec(("images", "filename_prefix"), output="image"),
    "SaveImageAdvanced": NodeSpec(("images", "filename_prefix", "format"), output="image"),
    "PreviewImage": NodeSpec(("images",), output="temp"),
    "SaveVideo": NodeSpec(("video", "filename_prefix", "format", "codec"), output="video"),
    "SaveAnimatedWEBP": NodeSpec(("images", "filename_prefix", "fps"), output="webp"),
    # ComfyUI-VideoHelperSuite (custom node): reports files under "gifs" with a "format"
    "VHS_VideoCombine": NodeSpec(
        ("images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"),
        output="gifs",
    ),
}
NODE_SPECS: dict[str, NodeSpec] = {**_LOADERS, **_SAMPLING, **_OTHER}

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# --------------------------------------------------------------------------- files
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(seed: bytes, *, size: int = 8, text: Mapping[str, str] | None = None) -> bytes:
    """A real (tiny) RGB PNG whose pixels derive from ``seed``; ``text`` goes into tEXt chunks."""
    digest = hashlib.sha256(seed).digest()
    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((digest[(x + y) % 32], digest[(3 * x + y) % 32], (32 * x + 8 * y) & 255))
            for x in range(size)
        )
        for y in range(size)
    )
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    texts = b"".join(
        _chunk(b"tEXt", k.encode() + b"\x00" + v.encode("latin-1", "replace"))
        for k, v in (text or {}).items()
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + texts
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def png_text(data: bytes) -> dict[str, str]:
    """Read the tEXt chunks of a PNG (tests use it to see what FakeComfy derived an output from)."""
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            out[key.decode()] = value.decode("latin-1")
        pos += 12 + length
    return out


def _video_bytes(meta: bytes, ext: str) -> bytes:
    """A small container-shaped blob: an ISO-BMFF ``ftyp`` box (mp4) or a RIFF/WEBP header."""
    if ext == "webp":
        body = b"WEBP" + b"VP8L" + struct.pack("<I", len(meta)) + meta
        return b"RIFF" + struct.pack("<I", len(body)) + body
    ftyp = b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2mp41"
    free = b"free" + meta
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(free) + 4) + free


# --------------------------------------------------------------------------- jobs
@dataclass
class _Job:
    number: int
    prompt_id: str
    graph: dict[str, Any]
    client_id: str | None
    extra: dict[str, Any]
    outputs: list[str]

    def row(self) -> list[Any]:
        return [self.number, self.prompt_id, self.graph, self.extra, self.outputs]


class _Died(Exception):
    """The double was told to die mid-run."""


class _Interrupted(Exception):
    def __init__(self, node: str) -> None:
        self.node = node


class _Failed(Exception):
    def __init__(self, node: str) -> None:
        self.node = node


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
    )


def _err(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


class FakeComfy:
    """A ComfyUI protocol double (see the module docstring). Not ComfyUI; runs no model."""

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
    ) -> None:
        self.host, self.port = host, port
        self.gpu_name, self.vram_gb, self.delay = gpu_name, vram_gb, delay
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

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeComfy:
        """Bind (port 0 picks a free port), start the executor; returns self."""
        self._wake, self._release, self._stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()
        app = web.Application(middlewares=[self._origin_check], client_max_size=64 * 1024 * 1024)
        for prefix in ("", "/api"):
            app.router.add_get(prefix + "/ws", self._ws)
            app.router.add_get(prefix + "/system_stats", self._system_stats)
            app.router.add_post(prefix + "/upload/image", self._upload)
            app.router.add_get(prefix + "/prompt", self._get_prompt)
            app.router.add_post(prefix + "/prompt", self._post_prompt)
            app.router.add_get(prefix + "/queue", self._get_queue)
            app.router.add_post(prefix + "/queue", self._post_queue)
            app.router.add_post(prefix + "/interrupt", self._post_interrupt)
            app.router.add_get(prefix + "/history", self._get_history)
            app.router.add_get(prefix + "/history/{prompt_id}", self._get_history_one)
            app.router.add_post(prefix + "/history", self._post_history)
            app.router.add_get(prefix + "/view", self._view)
            app.router.add_get(prefix + "/object_info", self._object_info)
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

    def release(self) -> None:
        """Let a sampler held at ``hold_at_step`` continue."""
        if self._release is not None:
            self._release.set()

    # ------------------------------------------------------------------ middleware
    @web.middleware
    async def _origin_check(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        origin, host = request.headers.get("Origin"), request.headers.get("Host")
        if origin and host:
            parsed = urllib.parse.urlparse(origin)
            theirs = (parsed.netloc if parsed.port else parsed.hostname or "").lower()
            ours = host.lower() if parsed.port else host.lower().rsplit(":", 1)[0]
            if theirs and theirs != ours:
                return web.Response(status=403)
        return await handler(request)

    # ------------------------------------------------------------------ websocket
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

    # ------------------------------------------------------------------ http
    async def _system_stats(self, request: web.Request) -> web.Response:
        vram = int(self.vram_gb * 1024**3)
        return web.json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 32 * 1024**3,
                    "ram_free": 16 * 1024**3,
                    "comfyui_version": "0.28.0 (FakeComfy protocol double)",
                    "python_version": "3.11",
                    "pytorch_version": "none (protocol double)",
                    "embedded_python": False,
                    "argv": ["FakeComfy"],
                },
                "devices": [self._device(vram)],
            }
        )

    def _device(self, vram: int) -> dict[str, Any]:
        if self.cpu:  # as seen on ComfyUI 0.28 --cpu: the "vram" fields hold system RAM
            ram = 32 * 1024**3
            return {
                "name": "cpu", "type": "cpu", "index": None, "vram_total": ram,
                "vram_free": ram // 2, "torch_vram_total": ram, "torch_vram_free": ram // 2,
            }  # fmt: skip
        return {
            "name": f"cuda:0 {self.gpu_name} : cudaMallocAsync",
            "type": "cuda",
            "index": 0,
            "vram_total": vram,
            "vram_free": vram,
            "torch_vram_total": 0,
            "torch_vram_free": 0,
        }

    async def _object_info(self, request: web.Request) -> web.Response:
        """The ``object_info`` it was given (e.g. one saved from a real ComfyUI); else 404.

        The double's own NODE_SPECS are too thin to pass for ComfyUI's schema.
        """
        self.object_info_requests += 1
        if self.object_info is None:
            return web.Response(status=404)
        return web.json_response(self.object_info)

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        image = form.get("image")
        if not isinstance(image, web.FileField):
            return web.Response(status=400)
        data = image.file.read()
        subfolder = str(form.get("subfolder", "") or "")
        name = image.filename or "image.png"
        if "/" in name or ".." in name or ".." in subfolder or subfolder.startswith("/"):
            return web.Response(status=400)
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        key = f"{subfolder}/{name}" if subfolder else name
        if not overwrite:
            stem, dot, ext = name.rpartition(".")
            i = 1
            while key in self.uploads and self.uploads[key] != data:
                name = f"{stem} ({i}).{ext}" if dot else f"{name} ({i})"
                key = f"{subfolder}/{name}" if subfolder else name
                i += 1
        self.uploads[key] = data
        self.files[("input", subfolder, name)] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": "input"})

    async def _get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response({"exec_info": self._status()["exec_info"]})

    async def _post_prompt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.Response(
                status=500, text="500 Internal Server Error (FakeComfy: body is not JSON)"
            )
        if not isinstance(body, dict) or "prompt" not in body:
            return web.json_response(
                {
                    "error": _err("no_prompt", "No prompt provided", "No prompt provided"),
                    "node_errors": {},
                },
                status=400,
            )
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        if not isinstance(prompt_id, str) or not _UUID.match(prompt_id):
            error = _err(
                "invalid_prompt_id",
                "prompt_id must be a valid UUID",
                "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                "omit it to let the server generate one",
            )
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        graph = body["prompt"]
        problem, node_errors, outputs = self._validate(graph)
        if problem is not None:
            return web.json_response({"error": problem, "node_errors": node_errors}, status=400)
        self._number += 1
        job = _Job(
            self._number,
            prompt_id,
            graph,
            body.get("client_id"),
            body.get("extra_data") or {},
            outputs,
        )
        self.prompts.append(graph)
        self._pending.append(job)
        assert self._wake is not None
        self._wake.set()
        await self._send("status", {"status": self._status()}, None)
        return web.json_response({"prompt_id": prompt_id, "number": job.number, "node_errors": {}})

    async def _get_queue(self, request: web.Request) -> web.Response:
        running = [self._running.row()] if self._running else []
        return web.json_response(
            {"queue_running": running, "queue_pending": [j.row() for j in self._pending]}
        )

    async def _post_queue(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self._pending.clear()
        if isinstance(body.get("delete"), list):
            self.deleted += [str(p) for p in body["delete"]]
            self._pending = [j for j in self._pending if j.prompt_id not in body["delete"]]
        return web.Response(status=200)

    async def _post_interrupt(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        target = body.get("prompt_id")
        self.interrupts.append(target)
        if self._running is not None and (target is None or target == self._running.prompt_id):
            self._interrupt = True
            self.release()
        return web.Response(status=200)

    async def _get_history(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("max_items", "0") or 0)
        items = list(self.history.items())
        if limit > 0:
            items = items[-limit:]
        return web.json_response(dict(items))

    async def _get_history_one(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _post_history(self, request: web.Request) -> web.Response:
        body = await self._json_or_empty(request)
        if body.get("clear"):
            self.history.clear()
        for pid in body.get("delete", []) or []:
            self.history.pop(pid, None)
        return web.Response(status=200)

    async def _view(self, request: web.Request) -> web.Response:
        name = request.query.get("filename", "")
        subfolder = request.query.get("subfolder", "")
        kind = request.query.get("type", "output")
        if (
            not name
            or name.startswith("/")
            or ".." in name
            or ".." in subfolder
            or subfolder.startswith("/")
            or kind not in ("output", "input", "temp")
        ):
            return web.Response(status=400)
        data = self.files.get((kind, subfolder, name))
        if data is None:
            return web.Response(status=404)
        ctype = {"png": "image/png", "mp4": "video/mp4", "webp": "image/webp"}.get(
            name.rsplit(".", 1)[-1], "application/octet-stream"
        )
        return web.Response(
            body=data, content_type=ctype, headers={"Content-Disposition": f'filename="{name}"'}
        )

    @staticmethod
    async def _json_or_empty(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {}
        return body if isinstance(body, dict) else {}

    # ------------------------------------------------------------------ validation
    def _validate(self, graph: Any) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        if not isinstance(graph, dict) or not graph:
            return _err("no_prompt", "No prompt provided", "No prompt provided"), {}, []
        outputs: list[str] = []
        for nid, node in graph.items():
            cls = node.get("class_type") if isinstance(node, dict) else None
            title = (node.get("_meta") or {}).get("title", cls) if isinstance(node, dict) else None
            if cls not in NODE_SPECS:
                label = title or f"ID #{nid}"
                msg = f"Node '{label}' not found. The custom node may not be installed."
                return (
                    _err(
                        "missing_node_type",
                        msg,
                        f"Node ID '#{nid}'",
                        node_id=nid,
                        class_type=cls,
                        node_title=title,
                    ),
                    {},
                    [],
                )
            if NODE_SPECS[cls].output:
                outputs.append(str(nid))
        if not outputs:
            return _err("prompt_no_outputs", "Prompt has no outputs"), {}, []
        node_errors: dict[str, Any] = {}
        for nid, node in graph.items():
            errors = self._node_errors(graph, node)
            if errors:
                node_errors[str(nid)] = {
                    "errors": errors,
                    "class_type": node["class_type"],
                    "dependent_outputs": [
                        o for o in outputs if str(nid) in self._ancestors(graph, o)
                    ],
                }
        if node_errors:
            details = "\n".join(
                f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"]
            )
            return (
                _err(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
                ),
                node_errors,
                [],
            )
        return None, {}, outputs

    def _node_errors(self, graph: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        spec, inputs = NODE_SPECS[node["class_type"]], node.get("inputs") or {}
        errors = []
        for name in spec.required:
            if name not in inputs:
                errors.append(
                    _err(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
        for name, value in inputs.items():
            if _is_link(value) and str(value[0]) not in graph:
                errors.append(
                    _err(
                        "bad_linked_input",
                        "Bad linked input, node does not exist",
                        f"{name}: {value}",
                        input_name=name,
                    )
                )
        for name, folder in spec.models.items():
            value = inputs.get(name)
            if (
                self.models is not None
                and isinstance(value, str)
                and value not in self.models.get(folder, [])
            ):
                options = self.models.get(folder, [])
                errors.append(
                    _err(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: {value!r} not in {options}",
                        input_name=name,
                        input_config=None,
                        received_value=value,
                    )
                )
        for name, low in spec.minimum.items():
            value = inputs.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < low:
                errors.append(
                    _err(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {low}",
                        f"{name}",
                        input_name=name,
                        received_value=value,
                    )
                )
        if node["class_type"] == "LoadImage":
            image = inputs.get("image")
            if isinstance(image, str) and image not in self.uploads:
                errors.append(
                    _err(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"image - Invalid image file: {image}",
                        input_name="image",
                    )
                )
        return errors

    # ------------------------------------------------------------------ execution
    def _ancestors(self, graph: dict[str, Any], nid: str) -> list[str]:
        """Node ids ``nid`` depends on, dependencies first (post-order DFS), ``nid`` last."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen or n not in graph:
                return
            seen.add(n)
            for value in (graph[n].get("inputs") or {}).values():
                if _is_link(value):
                    visit(str(value[0]))
            order.append(n)

        visit(nid)
        return order

    def _signature(self, graph: dict[str, Any], nid: str, memo: dict[str, str]) -> str:
        """A content hash of a node and everything it depends on (uploads included)."""
        if nid in memo:
            return memo[nid]
        node = graph[nid]
        parts: dict[str, Any] = {"class": node["class_type"]}
        for name, value in sorted((node.get("inputs") or {}).items()):
            parts[name] = self._signature(graph, str(value[0]), memo) if _is_link(value) else value
        if node["class_type"] == "LoadImage":
            parts["upload_sha256"] = hashlib.sha256(
                self.uploads.get(str(parts.get("image")), b"")
            ).hexdigest()
        memo[nid] = hashlib.sha256(
            json.dumps(parts, sort_keys=True, default=str).encode()
        ).hexdigest()
        return memo[nid]

    async def _work(self) -> None:
        assert self._wake is not None
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                job = self._pending.pop(0)
                self._running, self._interrupt = job, False
                await self._send("status", {"status": self._status()}, None)  # as ComfyUI does
                try:
                    await self._execute(job)
                except _Died:
                    asyncio.get_running_loop().create_task(self.aclose())
                    self._running = None
                    return
                self._running = None
                await self._send("status", {"status": self._status()}, None)
                await self._send(
                    "executing", {"node": None, "prompt_id": job.prompt_id}, job.client_id
                )

    async def _execute(self, job: _Job) -> None:
        sid, pid, graph = job.client_id, job.prompt_id, job.graph
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}

        async def emit(kind: str, data: dict[str, Any], record: bool = False) -> None:
            if record:
                messages.append([kind, data])
            await self._send(kind, data, sid)

        await emit("execution_start", {"prompt_id": pid, "timestamp": _now_ms()}, True)
        memo: dict[str, str] = {}
        order: list[str] = []
        for out in job.outputs:
            order += [n for n in self._ancestors(graph, out) if n not in order]
        cached = [n for n in order if self._signature(graph, n, memo) in self._cache]
        await emit(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}, True
        )
        status = "success"
        try:
            for nid in order:
                if nid in cached:
                    if nid in job.outputs:
                        outputs[nid] = self._cache[memo[nid]]
                        await emit(
                            "executed",
                            {
                                "node": nid,
                                "display_node": nid,
                                "prompt_id": pid,
                                "output": outputs[nid],
                            },
                        )
                    continue
                await self._run_node(job, nid, memo, outputs, emit)
            await emit("execution_success", {"prompt_id": pid, "timestamp": _now_ms()}, True)
        except _Interrupted as exc:
            status = "error"
            await emit(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": exc.node,
                    "node_type": graph[exc.node]["class_type"],
                    "executed": list(outputs),
                    "timestamp": _now_ms(),
                },
                True,
            )
        except _Failed as exc:
            status = "error"
            cls = graph[exc.node]["class_type"]
            await emit(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": exc.node,
                    "node_type": cls,
                    "executed": list(outputs),
                    "exception_message": f"FakeComfy injected failure in node {exc.node} ({cls})",
                    "exception_type": "RuntimeError",
                    "traceback": ["FakeComfy: injected failure\n"],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": _now_ms(),
                },
                True,
            )
        self.history[pid] = {
            "prompt": job.row(),
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in outputs
            },
        }

    async def _run_node(
        self,
        job: _Job,
        nid: str,
        memo: dict[str, str],
        outputs: dict[str, Any],
        emit: Callable[..., Awaitable[None]],
    ) -> None:
        pid, node = job.prompt_id, job.graph[nid]
        if self._interrupt:
            raise _Interrupted(nid)
        if nid == self.die_at_node:
            self.dead = True
            raise _Died()
        if nid == self.drop_ws_at_node:
            await self._close_sockets()
        await self._node_state(job, nid, "running")
        await emit("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
        if nid == self.fail_at_node:
            raise _Failed(nid)
        steps = self._steps(job.graph, node)
        if isinstance(steps, int) and steps > 0:
            await self._sample(job, nid, steps, memo[nid])
        elif self.delay:
            await asyncio.sleep(self.delay)
        spec = NODE_SPECS[node["class_type"]]
        if spec.output:
            outputs[nid] = self._make_outputs(job, nid, spec.output, memo[nid])
            self._cache[memo[nid]] = outputs[nid]
            await emit(
                "executed",
                {"node": nid, "display_node": nid, "prompt_id": pid, "output": outputs[nid]},
            )
        else:
            self._cache[memo[nid]] = {}
        await self._node_state(job, nid, "finished")

    async def _node_state(
        self, job: _Job, nid: str, state: str, value: int = 0, maximum: int = 1
    ) -> None:
        """A ``progress_state`` frame, as real ComfyUI sends around every node (not only samplers)."""
        pid = job.prompt_id
        await self._send(
            "progress_state",
            {
                "prompt_id": pid,
                "nodes": {
                    nid: {
                        "value": value,
                        "max": maximum,
                        "state": state,
                        "node_id": nid,
                        "prompt_id": pid,
                        "display_node_id": nid,
                        "parent_node_id": None,
                        "real_node_id": nid,
                    }
                },
            },
            job.client_id,
        )

    def _steps(self, graph: dict[str, Any], node: dict[str, Any]) -> int | None:
        """Sampler steps, following links through Primitive*/ComfySwitchNode like ComfyUI would."""
        if not node["class_type"].startswith("KSampler"):
            return None
        inputs = node.get("inputs") or {}
        steps = self._literal(graph, inputs.get("steps"))
        if not isinstance(steps, int):
            return None
        if node["class_type"] == "KSamplerAdvanced":
            start = self._literal(graph, inputs.get("start_at_step"))
            end = self._literal(graph, inputs.get("end_at_step"))
            if isinstance(start, int) and isinstance(end, int):
                return max(1, min(end, steps) - start)
        return steps

    def _literal(self, graph: dict[str, Any], value: Any, depth: int = 0) -> Any:
        if not _is_link(value) or depth > 20:
            return value
        node = graph.get(str(value[0])) or {}
        inputs = node.get("inputs") or {}
        if node.get("class_type", "").startswith("Primitive"):
            return self._literal(graph, inputs.get("value"), depth + 1)
        if node.get("class_type") == "ComfySwitchNode":
            chosen = (
                "on_true" if self._literal(graph, inputs.get("switch"), depth + 1) else "on_false"
            )
            return self._literal(graph, inputs.get(chosen), depth + 1)
        return None

    async def _sample(self, job: _Job, nid: str, steps: int, sig: str) -> None:
        pid, sid = job.prompt_id, job.client_id
        for step in range(1, steps + 1):
            if self._interrupt:
                raise _Interrupted(nid)
            if self.delay:
                await asyncio.sleep(self.delay)
            await self._send(
                "progress", {"value": step, "max": steps, "prompt_id": pid, "node": nid}, sid
            )
            await self._node_state(job, nid, "running", step, steps)
            preview = png_bytes(f"{sig}:{step}".encode(), size=4)
            await self._send_bytes(struct.pack(">II", 1, 2) + preview, sid)
            if step == self.hold_at_step:
                assert self._release is not None
                self.held = True
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.hold_timeout):  # keeps outside cancels
                            await self._release.wait()
                finally:
                    self.held = False
                self._release.clear()

    def _make_outputs(self, job: _Job, nid: str, kind: str, sig: str) -> dict[str, Any]:
        """Files as the real node reports them: ``type`` output or temp, under its real key.

        Like ComfyUI, PNGs carry the API graph in a ``prompt`` tEXt chunk and
        the UI workflow (``extra_data.extra_pnginfo.workflow``) in ``workflow``.
        """
        graph = job.graph
        inputs = graph[nid].get("inputs") or {}
        prefix = str(inputs.get("filename_prefix", "ComfyUI"))
        subfolder, _, stem = prefix.rpartition("/")
        temp = kind == "temp" or (kind == "gifs" and inputs.get("save_output") is False)
        folder = "temp" if temp else "output"
        if kind == "temp":
            subfolder, stem = "", f"ComfyUI_temp_{sig[:5]}"
        meta = self._provenance(graph, nid, sig)
        results = []
        ext = {"video": "mp4", "webp": "webp", "gifs": "mp4"}.get(kind, "png")
        count = 1 if kind in ("video", "webp", "gifs") else self._batch(graph, nid)
        pnginfo = (job.extra.get("extra_pnginfo") or {}) if isinstance(job.extra, dict) else {}
        for index in range(count):
            counter = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = counter
            filename = f"{stem}_{counter:05}_.{ext}"
            text = {**meta, "index": str(index)}
            if ext == "png":
                chunks = {"prompt": json.dumps(graph)}
                if isinstance(pnginfo, dict) and "workflow" in pnginfo:
                    chunks["workflow"] = json.dumps(pnginfo["workflow"])
                chunks["fakecomfy"] = json.dumps(text)
                data = png_bytes(f"{sig}:{index}".encode(), text=chunks)
            else:
                data = _video_bytes(json.dumps(text).encode(), ext)
            self.files[(folder, subfolder, filename)] = data
            item: dict[str, Any] = {"filename": filename, "subfolder": subfolder, "type": folder}
            if kind == "gifs":
                rate = inputs.get("frame_rate", 8)
                item |= {"format": str(inputs.get("format", "video/h264-mp4")), "frame_rate": rate}
            results.append(item)
        if kind == "gifs":
            return {"gifs": results}
        return {"images": results, "animated": [True]} if ext != "png" else {"images": results}

    def _provenance(self, graph: dict[str, Any], nid: str, sig: str) -> dict[str, str]:
        """What an output was derived from: seeds, texts and uploaded-image hashes upstream."""
        seeds, texts, sources = [], [], []
        for n in self._ancestors(graph, nid):
            inputs, cls = graph[n].get("inputs") or {}, graph[n]["class_type"]
            for key in ("seed", "noise_seed"):
                if isinstance(inputs.get(key), int) and not (
                    cls == "KSamplerAdvanced" and inputs.get("add_noise") == "disable"
                ):
                    seeds.append(inputs[key])
            for key in ("text", "prompt", "clip_l", "t5xxl"):
                if isinstance(inputs.get(key), str) and inputs[key]:
                    texts.append(inputs[key])
            if cls == "LoadImage":
                data = self.uploads.get(str(inputs.get("image")), b"")
                sources.append(hashlib.sha256(data).hexdigest())
        return {
            "double": "FakeComfy",
            "signature": sig,
            "seeds": json.dumps(seeds),
            "texts": json.dumps(texts),
            "source_sha256": json.dumps(sources),
        }

    def _batch(self, graph: dict[str, Any], nid: str) -> int:
        best = 1
        for n in self._ancestors(graph, nid):
            value = (graph[n].get("inputs") or {}).get("batch_size")
            if isinstance(value, int) and value > best:
                best = value
        return best


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- process
def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m nomad.testing.comfy",
        description="FakeComfy: a ComfyUI protocol double (runs no model).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--gpu-name", default="FakeComfy GPU (protocol double)")
    p.add_argument("--vram-gb", type=float, default=24.0)
    p.add_argument("--delay", type=float, default=0.0, help="seconds per sampler step")
    p.add_argument(
        "--models", help="JSON file {folder: [files]} of installed models (default: all)"
    )
    p.add_argument("--fail-at-node", default=None)
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    models = None
    if args.models:
        with open(args.models, encoding="utf-8") as fh:
            models = json.load(fh)
    fc = FakeComfy(
        host=args.host,
        port=args.port,
        gpu_name=args.gpu_name,
        vram_gb=args.vram_gb,
        delay=args.delay,
        models=models,
        fail_at_node=args.fail_at_node,
    )
    await fc.start()
    print(f"FakeComfy (ComfyUI protocol double) listening on {fc.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fc.aclose()


def main(argv: list[str] | None = None) -> None:
    """Run the double as a process until SIGTERM/SIGINT."""
    asyncio.run(_serve(_parse(argv)))


if __name__ == "__main__":
    main()
