"""Async ComfyUI client over httpx (HTTP) and websockets (``/ws``).

One run = upload inputs → connect ``/ws`` → queue the graph → follow events →
read ``/history`` (the source of truth) → download outputs from ``/view``.
If the socket drops mid-run the client reconnects and falls back to
``/history``; if the server itself is gone it raises
:class:`~nomad.errors.ComfyConnectionError` instead of hanging. Every wait is
bounded.

Giving up on a prompt never leaves it behind: if ``run`` is cancelled, its
``on_event`` handler raises or its timeout expires, the client asks ComfyUI to
drop the prompt (queue delete + ``/interrupt`` for that prompt id only; best
effort, bounded by ``cleanup_timeout``) and then re-raises. Waits use
``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for``
swallows a cancel that arrives as the awaited operation completes.

The HTTP client is injectable (``http=httpx.AsyncClient(transport=…)``) and so
is the WebSocket connector (``ws_connect``); ``proxy`` (``socks5h://…``) routes
both through SOCKS for the privacy feature.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import re
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from nomad import privacy
from nomad.comfy._errors import ComfyTimeout, execution_error, validation_error
from nomad.comfy._phases import PhaseClock
from nomad.comfy._types import (
    ComfyEvent,
    Output,
    Preview,
    RunResult,
    SystemStats,
    media_type,
    output_kind,
)
from nomad.errors import ComfyConnectionError, ComfyError, ComfyInterrupted, PrivacyError

log = logging.getLogger(__name__)

EventHandler = Callable[[ComfyEvent], Awaitable[None] | None]
WsConnect = Callable[..., Any]

_TERMINAL_ERRORS = ("execution_error", "execution_interrupted")


class ComfyClient:
    """A client for one ComfyUI server. Use as ``async with ComfyClient(url) as c: …``."""

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        proxy: str | None = None,
        timeout: float = 30,
        run_timeout: float = 3600,
        poll_interval: float = 2.0,
        ws_connect: WsConnect | None = None,
        cleanup_timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.proxy, self.timeout = proxy, timeout
        self.run_timeout, self.poll_interval = run_timeout, poll_interval
        self.cleanup_timeout = cleanup_timeout
        self._own_http = http is None
        # Through the proxy the SOCKS handshake gets a hard deadline too (httpx has none for it).
        self._http = http or httpx.AsyncClient(
            timeout=timeout, **privacy.async_client_kwargs(proxy)
        )
        self._ws_connect = ws_connect

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own_http:
            await self._http.aclose()

    # ------------------------------------------------------------------ http plumbing
    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            resp = await self._http.request(method, url, **kw)
        except httpx.ProxyError as exc:
            raise PrivacyError(
                f"ComfyUI at {self.base_url} through the proxy: {exc}",
                hint="is the anon/tor client running and bootstrapped? check `nomad doctor`",
            ) from exc
        except httpx.TimeoutException as exc:
            raise ComfyConnectionError(
                f"ComfyUI at {self.base_url} timed out on {method} {path}",
                hint="is the server overloaded or the tunnel down?",
            ) from exc
        except httpx.HTTPError as exc:
            raise ComfyConnectionError(
                f"ComfyUI at {self.base_url} is unreachable ({type(exc).__name__}: {exc})",
                hint="check the endpoint (nomad status) or pass --endpoint",
            ) from exc
        if resp.status_code == 403:
            raise ComfyError(
                f"ComfyUI at {self.base_url} refused {method} {path} (403)",
                hint="a proxy may be sending a foreign Origin header",
            )
        if resp.status_code >= 500:
            raise ComfyError(
                f"ComfyUI at {self.base_url} failed on {method} {path}: "
                f"HTTP {resp.status_code} {resp.text[:200]}"
            )
        return resp

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = await self._request(method, path, **kw)
        if resp.status_code != 200:
            raise ComfyError(
                f"ComfyUI answered {resp.status_code} to {method} {path}: {resp.text[:200]}"
            )
        try:
            return resp.json()
        except json.JSONDecodeError as exc:
            raise ComfyError(f"ComfyUI sent non-JSON to {method} {path}") from exc

    # ------------------------------------------------------------------ simple calls
    async def health(self) -> SystemStats:
        """``/system_stats``: the GPU name and VRAM; raises if the server does not answer."""
        raw = await self._json("GET", "/system_stats")
        devices = raw.get("devices") or [{}]
        dev = devices[0]
        name = str(dev.get("name", "unknown"))
        name = re.sub(r"^(cuda|xpu|mps|npu):\d+\s+", "", name).split(" : ")[0].strip()
        kind = str(dev.get("type", "unknown"))
        gib = 1024**3
        cpu = kind == "cpu"  # its "vram" is system RAM: not a GPU, say so
        return SystemStats(
            gpu_name="CPU" if cpu else name,
            vram_total_gb=0.0 if cpu else round(float(dev.get("vram_total", 0)) / gib, 2),
            vram_free_gb=0.0 if cpu else round(float(dev.get("vram_free", 0)) / gib, 2),
            device_type=kind,
            comfyui_version=(raw.get("system") or {}).get("comfyui_version"),
            raw=raw,
        )

    async def object_info(self) -> dict[str, Any]:
        """``/object_info``: every node class with its inputs, ranges and choices (~660 KB)."""
        info = await self._json("GET", "/object_info")
        if not isinstance(info, dict):
            raise ComfyError(f"ComfyUI at {self.base_url} sent a non-object /object_info")
        return info

    async def upload_image(
        self, name: str, data: bytes, *, subfolder: str = "", overwrite: bool = True
    ) -> str:
        """Upload an input file; returns the name to put in a LoadImage node."""
        form = {"type": "input", "overwrite": "true" if overwrite else "false"}
        if subfolder:
            form["subfolder"] = subfolder
        resp = await self._request(
            "POST",
            "/upload/image",
            data=form,
            files={"image": (name, data, "application/octet-stream")},
        )
        if resp.status_code != 200:
            raise ComfyError(
                f"ComfyUI refused the upload of {name!r}: HTTP {resp.status_code}",
                hint="the name must be a plain file name",
            )
        body = resp.json()
        sub = body.get("subfolder") or ""
        return f"{sub}/{body['name']}" if sub else str(body["name"])

    async def queue_prompt(
        self, graph: dict[str, Any], client_id: str, prompt_id: str | None = None
    ) -> str:
        """POST /prompt; a 400 becomes a ComfyValidationError naming node, class and input."""
        payload: dict[str, Any] = {"prompt": graph, "client_id": client_id}
        if prompt_id is not None:
            payload["prompt_id"] = prompt_id
        resp = await self._request("POST", "/prompt", json=payload)
        if resp.status_code == 400:
            try:
                body = resp.json()
            except json.JSONDecodeError:
                body = {"error": {"type": "bad_request", "message": resp.text[:200]}}
            raise validation_error(body)
        if resp.status_code != 200:
            raise ComfyError(
                f"ComfyUI answered {resp.status_code} to POST /prompt: {resp.text[:200]}"
            )
        return str(resp.json()["prompt_id"])

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Stop the running prompt (only if it is ``prompt_id``, when given)."""
        await self._request(
            "POST", "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {}
        )

    async def queue(self) -> dict[str, Any]:
        """``/queue``: ``queue_running`` and ``queue_pending`` rows."""
        return dict(await self._json("GET", "/queue"))

    async def clear_queue(self) -> None:
        """Drop every pending prompt (the running one is left alone; see :meth:`interrupt`)."""
        await self._request("POST", "/queue", json={"clear": True})

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        """Drop these pending prompts."""
        await self._request("POST", "/queue", json={"delete": prompt_ids})

    async def history(self, prompt_id: str) -> dict[str, Any]:
        """The history entry of one prompt, or ``{}`` while it has not finished."""
        body = await self._json("GET", f"/history/{prompt_id}")
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return dict(entry) if isinstance(entry, dict) else {}

    async def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        """Download one file through ``/view``."""
        resp = await self._request(
            "GET", "/view", params={"filename": filename, "subfolder": subfolder, "type": type}
        )
        if resp.status_code != 200:
            raise ComfyError(
                f"ComfyUI could not serve {subfolder}/{filename} ({type}): HTTP {resp.status_code}"
            )
        return resp.content

    # ------------------------------------------------------------------ a whole run
    async def run(
        self,
        graph: dict[str, Any],
        *,
        inputs: dict[str, bytes] | None = None,
        on_event: EventHandler | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Upload ``inputs``, run ``graph`` and download its outputs.

        ``inputs`` maps the file name a LoadImage node references to its bytes;
        the graph (a deep copy) is rewritten to the server-side names.

        ``on_event`` (sync or async) gets every event of this prompt. If it
        raises, the run stops: the prompt is interrupted (or dropped from the
        queue) and the handler's exception propagates unchanged. The same
        clean-up runs when the task is cancelled (``CancelledError`` is
        re-raised; the clean-up is bounded by ``cleanup_timeout``) and when
        ``timeout`` expires (:class:`ComfyTimeout`).
        """
        clock = time.monotonic
        deadline = clock() + (timeout or self.run_timeout)
        t0 = clock()
        graph = copy.deepcopy(graph)
        for name, data in (inputs or {}).items():
            server_name = await self.upload_image(name, data)
            _rename_input(graph, name, server_name)
        t_upload = clock()
        client_id, prompt_id = uuid.uuid4().hex, str(uuid.uuid4())
        follower = _Follower(self, client_id, prompt_id, graph, on_event)
        await follower.connect()
        try:
            await self.queue_prompt(graph, client_id, prompt_id)
            t_queued = clock()
            entry = await follower.follow(deadline)
        except (Exception, asyncio.CancelledError) as exc:
            if follower.handler_failed or _gives_up(exc):
                await self._abandon(prompt_id)
            raise
        finally:
            await follower.close()
        t_done = clock()
        _raise_for_status(entry)
        outputs, previews = await self._download(entry)
        t_end = clock()
        started = follower.started_at or t_queued
        execution = max(0.0, t_done - started)
        load = min(execution, follower.phases.model_load)
        timings = {
            "upload": t_upload - t0,
            "queue_wait": max(0.0, started - t_upload),  # connect + submit + wait
            "execution": execution,  # model_load + inference
            "model_load": load,
            "inference": execution - load,
            "download": t_end - t_done,
            "total": t_end - t0,
        }
        return RunResult(
            prompt_id, outputs, timings, entry, follower.cached, previews, follower.phases.loaded
        )

    async def _abandon(self, prompt_id: str) -> None:
        """Drop our prompt if still queued, interrupt it if running; best effort, bounded."""
        try:
            async with asyncio.timeout(self.cleanup_timeout):
                await self.delete_from_queue([prompt_id])  # first: it may start meanwhile
                await self.interrupt(prompt_id)  # a no-op unless ours is the running one
        except Exception as exc:  # TimeoutError, ComfyError: the caller's error matters more
            log.warning("could not stop prompt %s on %s: %s", prompt_id, self.base_url, exc)

    async def _download(self, entry: dict[str, Any]) -> tuple[list[Output], list[Preview]]:
        """Download the results (``type: output``); list the temp previews without fetching them.

        Real ComfyUI reports PreviewImage items as ``type: temp`` next to the
        SaveImage ones: keeping them would hand users copies of their results.
        """
        results: list[Output] = []
        previews: list[Preview] = []
        for node, item, animated in history_items(entry):
            sub, typ, name = str(item.get("subfolder", "")), str(item["type"]), item["filename"]
            if typ != "output":
                previews.append(Preview(node, name, sub, typ))
                continue
            fmt = item.get("format") if isinstance(item.get("format"), str) else None
            data = await self.view(name, sub, typ)
            kind = output_kind(name, animated, fmt)
            results.append(Output(node, name, sub, typ, kind, data, media_type(name, fmt)))
        return results, previews


def history_items(entry: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    """Every file item of a history entry as (node, item, animated), in node order.

    Nodes report files under several keys: ``images`` (SaveImage,
    PreviewImage, SaveVideo, SaveAnimatedWEBP with ``animated: [true]``),
    ``gifs`` (VideoHelperSuite's VHS_VideoCombine, with a ``format``),
    ``video``/``audio`` (other custom nodes). An item without ``type`` is an
    output, as ComfyUI's own frontend assumes.
    """
    found = []
    for node, out in (entry.get("outputs") or {}).items():
        if not isinstance(out, dict):
            continue
        animated = any(bool(a) for a in out.get("animated", []) or [])
        for key, items in out.items():
            if key == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    found.append((str(node), {"type": "output", **item}, animated))
    return found


def _rename_input(graph: dict[str, Any], name: str, server_name: str) -> None:
    for node in graph.values():
        inputs = node.get("inputs") or {}
        for key in ("image", "video", "audio", "file"):
            if inputs.get(key) == name:
                inputs[key] = server_name


def _gives_up(exc: BaseException) -> bool:
    """Whether ``run`` stopped waiting while its prompt may still be queued or running.

    Cancellation, the run timeout and unexpected errors: yes. Other ComfyErrors
    mean the server is gone, forgot the prompt or never accepted it.
    """
    return isinstance(exc, ComfyTimeout) or not isinstance(exc, ComfyError)


def _raise_for_status(entry: dict[str, Any]) -> None:
    status = entry.get("status") or {}
    if status.get("status_str", "success") == "success":
        return
    for kind, data in status.get("messages") or []:
        if kind == "execution_interrupted":
            raise ComfyInterrupted(
                f"prompt interrupted at node {data.get('node_id')} ({data.get('node_type')})"
            )
        if kind == "execution_error":
            raise execution_error(data)
    raise ComfyError(f"ComfyUI reported status {status.get('status_str')!r} without details")


class _Follower:
    """Follows one prompt on ``/ws`` with ``/history`` as fallback and final word."""

    def __init__(
        self,
        client: ComfyClient,
        client_id: str,
        prompt_id: str,
        graph: dict[str, Any],
        on_event: EventHandler | None,
    ) -> None:
        self.client, self.client_id, self.prompt_id = client, client_id, prompt_id
        self.graph, self.on_event = graph, on_event
        self.ws: Any = None
        self.started_at: float | None = None
        self.cached: list[str] = []
        self.phases = PhaseClock()  # model load vs inference, from per-node events
        self.finished = False
        self.handler_failed = False

    @property
    def ws_url(self) -> str:
        base = self.client.base_url
        scheme = "wss" if base.startswith("https") else "ws"
        return f"{scheme}://{base.split('://', 1)[1]}/ws?clientId={self.client_id}"

    async def connect(self) -> bool:
        """Open the socket; False (not an error) if it can't: /history still works."""
        connect = self.client._ws_connect
        if connect is None:
            from websockets.asyncio.client import connect as ws_connect

            connect = ws_connect
        limit = self.client.timeout
        if self.client.proxy:  # through SOCKS the open has the privacy deadline, like every connect
            limit = min(limit, privacy.connect_deadline())
        try:
            async with asyncio.timeout(limit):
                self.ws = await connect(
                    self.ws_url,
                    proxy=self.client.proxy,
                    max_size=None,
                    open_timeout=limit,
                    ping_interval=20,
                    ping_timeout=20,
                )
        except TimeoutError:
            self.ws = None
            if self.client.proxy:  # /history would wait on the same silent proxy: say so now
                raise PrivacyError(
                    f"ComfyUI's /ws at {self.client.base_url} through the proxy: "
                    f"no answer within {limit:g} s",
                    hint="is the anon/tor client running and bootstrapped? check `nomad doctor`",
                ) from None
            log.debug("ws connect to %s timed out", self.client.base_url)
            return False
        except Exception as exc:  # refused, bad handshake: fall back to /history
            log.debug("ws connect to %s failed: %s", self.client.base_url, exc)
            self.ws = None
            return False
        return True

    async def close(self) -> None:
        if self.ws is not None:
            ws, self.ws = self.ws, None
            try:
                async with asyncio.timeout(self.client.cleanup_timeout):
                    await ws.close()
            except Exception as exc:  # closing a dead socket is not worth an error
                log.debug("ws close failed: %s", exc)

    async def follow(self, deadline: float) -> dict[str, Any]:
        """Return the prompt's history entry once it has finished (bounded by ``deadline``).

        Only frames about our prompt count as news: ``status`` broadcasts from a
        busy server don't postpone the ``/history`` check past ``poll_interval``.
        """
        check_at = time.monotonic() + self.client.poll_interval
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ComfyTimeout(
                    f"prompt {self.prompt_id} did not finish in time on {self.client.base_url}",
                    hint="raise --timeout or check the GPU",
                )
            if self.finished or self.ws is None:
                entry = await self._history_or_reconnect(remaining)
                if entry:
                    return entry
                continue
            try:
                async with asyncio.timeout(max(0.0, min(check_at - time.monotonic(), remaining))):
                    msg = await self.ws.recv()
            except TimeoutError:  # no news of our prompt: ask /history (and /queue) directly
                check_at = time.monotonic() + self.client.poll_interval
                entry = await self._history_or_vanished()
                if entry:
                    return entry
                continue
            except Exception as exc:  # ConnectionClosed and friends: fall back to /history
                log.info("ComfyUI socket dropped mid-run (%s); using /history", exc)
                self.ws = None
                continue
            if await self._handle(msg):
                check_at = time.monotonic() + self.client.poll_interval

    async def _history_or_reconnect(self, remaining: float) -> dict[str, Any]:
        try:
            entry = await self._history_or_vanished()
        except ComfyTimeout:
            raise
        except ComfyConnectionError as exc:  # the server itself is gone: fail, don't hang
            raise ComfyConnectionError(
                f"ComfyUI at {self.client.base_url} went away while running "
                f"prompt {self.prompt_id}",
                hint="the node may have crashed or been preempted; the job can be retried",
            ) from exc
        if entry:
            return entry
        if not self.finished and await self.connect():
            return await self.client.history(self.prompt_id)  # events may have been missed
        await asyncio.sleep(
            min(self.client.poll_interval if not self.finished else 0.05, remaining)
        )
        return {}

    async def _history_or_vanished(self) -> dict[str, Any]:
        """The history entry, ``{}`` while still queued; an error if ComfyUI forgot the prompt.

        Also after the finish frame: ComfyUI moves a prompt from running to the
        history in one step, so one that is in neither was cleared or lost to a
        restart and polling ``/history`` until the deadline would be a hang.
        """
        entry = await self.client.history(self.prompt_id)
        if entry:
            return entry
        queue = await self.client.queue()
        rows = [*queue.get("queue_running", []), *queue.get("queue_pending", [])]
        if any(isinstance(r, list) and len(r) > 1 and r[1] == self.prompt_id for r in rows):
            return {}
        entry = await self.client.history(self.prompt_id)  # it may have just finished
        if entry:
            return entry
        raise ComfyError(
            f"prompt {self.prompt_id} is neither queued nor in the history of "
            f"{self.client.base_url}",
            hint="it was deleted from the queue or ComfyUI restarted; submit it again",
        )

    async def _handle(self, msg: str | bytes) -> bool:
        """Emit the event a frame carries; True if it was news of our prompt."""
        if isinstance(msg, bytes):
            if len(msg) >= 8 and struct.unpack(">I", msg[:4])[0] == 1:
                await self._emit(ComfyEvent("preview", self.prompt_id, image=msg[8:]))
                return True
            return False
        try:
            frame = json.loads(msg)
        except json.JSONDecodeError:
            return False
        kind, data = frame.get("type"), frame.get("data") or {}
        if not isinstance(data, dict) or data.get("prompt_id", self.prompt_id) != self.prompt_id:
            return False
        if kind == "status":
            return False
        if kind == "execution_start":
            self.started_at = time.monotonic()
        elif kind == "execution_cached":
            self.cached = [str(n) for n in data.get("nodes", [])]
        elif kind in ("execution_success", *_TERMINAL_ERRORS) or (
            kind == "executing" and data.get("node") is None
        ):
            self.finished = True
        node = data.get("node", data.get("node_id"))
        node = None if node is None else str(node)
        cls = (self.graph.get(node) or {}).get("class_type") if node else None
        self.phases.observe(str(kind), node, cls, time.monotonic())
        await self._emit(
            ComfyEvent(
                str(kind), self.prompt_id, node, cls, data.get("value"), data.get("max"), data=data
            )
        )
        return True

    async def _emit(self, event: ComfyEvent) -> None:
        if self.on_event is None:
            return
        try:
            result = self.on_event(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.handler_failed = True  # run() stops the prompt, then re-raises this
            raise
