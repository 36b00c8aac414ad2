"""aiohttp application for ``nomad web``: one page, a small JSON API.

Routes (JSON unless noted; submitting needs ``Authorization: Bearer TOKEN``
because a job can wake a GPU, which costs money):

- ``GET /`` — the page (HTML).
- ``GET /api/health`` — liveness.
- ``GET /api/workflows`` — offered workflows and their parameters.
- ``POST /api/jobs`` — JSON ``{workflow, params}`` or multipart (``workflow``,
  ``params`` as JSON text, ``image`` file). ``Idempotency-Key`` header makes
  retries safe. 202 with the job; 400 bad parameters; 401/403 token; 413
  upload too large; 429 over quota (with ``resets_at``).
- ``GET /api/jobs/{id}`` — status, progress, position, outputs.
- ``GET /api/jobs/{id}/outputs/{i}`` — the output bytes.
- ``POST /api/jobs/{id}/cancel``.
- ``GET /api/status`` — queue depth by status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from nomad.config.schema import WebConfig
from nomad.errors import JobNotFound, LimitExceeded, NomadError, WorkflowError
from nomad.queue.base import Job, JobQueue

JSON = dict[str, Any]


class StorageLike(Protocol):
    """The part of :class:`nomad.storage.Storage` the web door uses."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...


@dataclass
class WebDeps:
    """What the handlers need; the CLI passes real pieces, tests pass real local ones."""

    config: WebConfig
    queue: JobQueue
    storage: StorageLike
    load_workflow: Callable[[str], Any]
    workflow_names: list[str]
    tokens: list[str] = field(default_factory=list)
    input_prefix: str = "inputs/web/"


DEPS: web.AppKey[WebDeps] = web.AppKey("deps", WebDeps)


def make_app(deps: WebDeps) -> web.Application:
    """The aiohttp application (max request size = the upload limit)."""
    app = web.Application(
        client_max_size=int(deps.config.max_upload_mb * 1024 * 1024),
        middlewares=[_errors],
    )
    app[DEPS] = deps
    app.router.add_get("/", _index)
    app.router.add_get("/api/health", _health)
    app.router.add_get("/api/workflows", _workflows)
    app.router.add_get("/api/status", _status)
    app.router.add_post("/api/jobs", _submit)
    app.router.add_get("/api/jobs/{id}", _job)
    app.router.add_get("/api/jobs/{id}/outputs/{index:\\d+}", _output)
    app.router.add_post("/api/jobs/{id}/cancel", _cancel)
    return app


def _error(status: int, message: str, hint: str | None = None, **extra: Any) -> web.Response:
    body: JSON = {"error": message, **extra}
    if hint:
        body["hint"] = hint
    return web.json_response(body, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """NomadError → JSON with a status; never a traceback page."""
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[DEPS].config.max_upload_mb
        return _error(413, f"upload larger than {limit:g} MB", "send a smaller image")
    except JobNotFound as exc:
        return _error(404, exc.message)
    except LimitExceeded as exc:
        return _error(429, exc.message, exc.hint, resets_at=exc.resets_at)
    except WorkflowError as exc:
        return _error(400, exc.message, exc.hint)
    except NomadError as exc:
        return _error(503, exc.message, exc.hint)
    except json.JSONDecodeError as exc:
        return _error(400, f"body is not valid JSON: {exc.msg}")


def _user(request: web.Request) -> str:
    """The token's identity ('web:<8 hex>'), or raise 401/403. Tokens are never logged."""
    tokens = request.app[DEPS].tokens
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "missing bearer token", "hint": "Authorization: Bearer TOKEN"}),
            content_type="application/json",
        )
    given = header.removeprefix("Bearer ").strip()
    if not any(hmac.compare_digest(given, t) for t in tokens):
        raise web.HTTPForbidden(
            text=json.dumps({"error": "token not accepted"}), content_type="application/json"
        )
    return "web:" + hashlib.sha256(given.encode()).hexdigest()[:8]


async def _index(request: web.Request) -> web.Response:
    page = resources.files("nomad.web").joinpath("static/index.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _param_doc(spec: Any) -> JSON:
    keys = ("type", "default", "min", "max", "choices", "help")
    return {k: getattr(spec, k) for k in keys if getattr(spec, k, None) is not None}


async def _workflows(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    out = []
    for name in deps.workflow_names:
        wf = await asyncio.to_thread(deps.load_workflow, name)
        params = {k: _param_doc(v) for k, v in getattr(wf, "params", {}).items()}
        out.append({"name": name, "output_kind": getattr(wf, "output_kind", "image"), "params": params})
    return web.json_response(out)


async def _status(request: web.Request) -> web.Response:
    counts = await asyncio.to_thread(request.app[DEPS].queue.counts)
    return web.json_response({"jobs": {k.value: v for k, v in counts.items()}})


async def _read_submission(request: web.Request) -> tuple[str, JSON, bytes | None, str | None]:
    """(workflow, params, image bytes, image filename) from JSON or multipart."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        image = form.get("image")
        raw = form.get("params") or "{}"
        params = _params(json.loads(raw if isinstance(raw, str) else "{}"))
        data = image.file.read() if isinstance(image, web.FileField) else None
        name = image.filename if isinstance(image, web.FileField) else None
        return str(form.get("workflow", "")), params, data, name
    body = await request.json()
    if not isinstance(body, dict):
        raise WorkflowError("body must be a JSON object {workflow, params}")
    return str(body.get("workflow", "")), _params(body.get("params") or {}), None, None


def _params(value: Any) -> JSON:
    """``params`` must be a JSON object; anything else is a 400, not a 500."""
    if not isinstance(value, dict):
        raise WorkflowError(
            f"params must be a JSON object of option: value, not {type(value).__name__}",
            hint='e.g. {"prompt": "an astronaut"}',
        )
    return value


async def _submit(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    user = _user(request)
    workflow, params, image, filename = await _read_submission(request)
    if workflow not in deps.workflow_names:
        known = ", ".join(deps.workflow_names)
        raise WorkflowError(f"unknown workflow {workflow!r}; offered here: {known}")
    wf = await asyncio.to_thread(deps.load_workflow, workflow)
    images = {"image": image} if image is not None else None
    await asyncio.to_thread(wf.bind, params, images)  # validate: nothing is queued on error
    inputs: dict[str, str] = {}
    if image is not None:
        ext = mimetypes.guess_extension(mimetypes.guess_type(filename or "")[0] or "") or ".png"
        key = f"{deps.input_prefix}{hashlib.sha256(image).hexdigest()}{ext}"
        await asyncio.to_thread(deps.storage.put_bytes, key, image)
        inputs["image"] = key
    job = await asyncio.to_thread(
        deps.queue.enqueue,
        workflow,
        params,
        inputs=inputs,
        front_door="web",
        user=user,
        client_key=_client_key(user, request.headers.get("Idempotency-Key")),
    )
    return web.json_response(await _job_doc(deps, job), status=202)


def _client_key(user: str, key: str | None) -> str | None:
    """Idempotency keys are per token: another user's same key must not return their job."""
    return f"{user}:{key}" if key else None


async def _job_doc(deps: WebDeps, job: Job) -> JSON:
    position = await asyncio.to_thread(deps.queue.position, job.id)
    return {
        "id": job.id,
        "workflow": job.workflow,
        "status": job.status.value,
        "progress": job.progress,
        "detail": job.detail,
        "position": position,
        "error": job.error,
        "outputs": [f"/api/jobs/{job.id}/outputs/{i}" for i in range(len(job.outputs))],
        "times": job.times,
        "gpu": job.gpu,
        "cost": job.cost,
    }


async def _owned_job(request: web.Request) -> Job:
    deps = request.app[DEPS]
    user = _user(request)
    job = await asyncio.to_thread(deps.queue.get, request.match_info["id"])
    if job.user != user:
        raise JobNotFound(f"no job {request.match_info['id']}")
    return job


async def _job(request: web.Request) -> web.Response:
    return web.json_response(await _job_doc(request.app[DEPS], await _owned_job(request)))


async def _output(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    job = await _owned_job(request)
    index = int(request.match_info["index"])
    if index >= len(job.outputs):
        raise JobNotFound(f"job {job.id} has {len(job.outputs)} output(s)")
    key = job.outputs[index]
    data = await asyncio.to_thread(deps.storage.get_bytes, key)
    ctype = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return web.Response(body=data, content_type=ctype)


async def _cancel(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    job = await _owned_job(request)
    job = await asyncio.to_thread(deps.queue.cancel, job.id)
    return web.json_response(await _job_doc(deps, job))
