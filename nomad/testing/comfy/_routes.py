"""The HTTP routes (each also under ``/api/…``) and the Origin check, as ComfyUI 0.28 answers them."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from nomad.testing.comfy._state import _Job
from nomad.testing.comfy._validation import _err, _Validation

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class _Routes(_Validation):
    """Route handlers; :meth:`_add_routes` wires them into an aiohttp app."""

    def _add_routes(self, app: web.Application) -> None:
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
        number = self._number  # as ComfyUI 0.28: counts from 0, every parsed POST takes one
        self._number += 1
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
        given = body.get("extra_data")  # the history row's extra, filled in as ComfyUI does
        extra = dict(given) if isinstance(given, dict) else {}
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        extra["create_time"] = int(time.time() * 1000)
        job = _Job(number, prompt_id, graph, body.get("client_id"), extra, outputs)
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
