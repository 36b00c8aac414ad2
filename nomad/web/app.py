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
- ``GET /api/status`` — queue depth by status and the GPU state (token unless
  ``web.public_status``).

Safe to expose: wrong or missing tokens are rate limited per client address
(``web.auth_failures_per_minute``, then 429 with ``Retry-After``); every answer
carries security headers and a ``Server`` header without versions; bodies
that are not UTF-8 or nest deeper than :data:`MAX_JSON_DEPTH` are a 400, never
a traceback; an ``Idempotency-Key`` replayed with a different body is a 422.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from nomad.config.schema import WebConfig, WebhooksConfig
from nomad.errors import JobNotFound, LimitExceeded, NomadError, WorkflowError
from nomad.queue.base import Job, JobQueue, JobStatus

JSON = dict[str, Any]
log = logging.getLogger("nomad.web")
MAX_JSON_DEPTH = 32  # workflow params are flat; deeper is an attack or a bug
AUTOSCALER_STATE = ("autoscaler", "status")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' blob:; media-src 'self' blob:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


class BadRequest(WorkflowError):
    """A request body we cannot read (encoding, depth): 400 with one clear line."""


class IdempotencyConflict(NomadError):
    """The same Idempotency-Key came back with a different request body."""


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
    clock: Callable[[], float] = time.monotonic  # the auth-failure window (tests inject one)
    webhooks: WebhooksConfig | None = None  # webhooks.secret set ⇒ jobs may ask for one
    privacy: bool = False  # privacy.enabled: no outbound calls of our own (they would go direct)
    direct_webhooks: bool = False  # privacy on but privacy.legs.webhooks: false (sent direct)
    failures: dict[str, collections.deque[float]] = field(default_factory=dict)


DEPS: web.AppKey[WebDeps] = web.AppKey("deps", WebDeps)


def make_app(deps: WebDeps) -> web.Application:
    """The aiohttp application (max request size = the upload limit)."""
    app = web.Application(
        client_max_size=int(deps.config.max_upload_mb * 1024 * 1024),
        middlewares=[_errors],
    )
    app.on_response_prepare.append(_headers)
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


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    """Security headers on every answer; ``Server`` names no versions."""
    response.headers["Server"] = "nomad"
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """NomadError → JSON with a status; never a traceback page."""
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except IdempotencyConflict as exc:
        return _error(422, exc.message, exc.hint)
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
    except (UnicodeDecodeError, RecursionError):
        return _error(400, "body is not valid UTF-8 JSON")


def _user(request: web.Request) -> str:
    """The token's identity ('web:<8 hex>'), or raise 401/403/429. Tokens are never logged."""
    deps = request.app[DEPS]
    client = request.remote or "?"
    _check_rate(deps, client)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        _failed(deps, client)
        raise web.HTTPUnauthorized(
            text=json.dumps(
                {"error": "missing bearer token", "hint": "Authorization: Bearer TOKEN"}
            ),
            content_type="application/json",
        )
    given = header.removeprefix("Bearer ").strip()
    matched = False
    for token in deps.tokens:  # compare with every token: the time does not tell which matched
        matched |= bool(given) and hmac.compare_digest(given.encode(), token.encode())
    if not matched:
        _failed(deps, client)
        raise web.HTTPForbidden(
            text=json.dumps({"error": "token not accepted"}), content_type="application/json"
        )
    return "web:" + hashlib.sha256(given.encode()).hexdigest()[:8]


def _recent(deps: WebDeps, client: str) -> collections.deque[float]:
    window = deps.failures.setdefault(client, collections.deque())
    edge = deps.clock() - 60.0
    while window and window[0] <= edge:
        window.popleft()
    return window


def _check_rate(deps: WebDeps, client: str) -> None:
    """Too many wrong tokens from one address in the last minute ⇒ 429 until the window passes."""
    window = _recent(deps, client)
    if len(window) >= deps.config.auth_failures_per_minute:
        retry = max(1, int(window[0] + 60.0 - deps.clock()) + 1)
        raise web.HTTPTooManyRequests(
            text=json.dumps(
                {"error": "too many failed token attempts", "hint": f"retry in {retry} s"}
            ),
            content_type="application/json",
            headers={"Retry-After": str(retry)},
        )


def _failed(deps: WebDeps, client: str) -> None:
    window = _recent(deps, client)
    window.append(deps.clock())
    if len(window) == deps.config.auth_failures_per_minute:
        log.warning("web: %d failed token attempts from %s in a minute", len(window), client)
    if len(deps.failures) > 10_000:  # bounded memory under a spray of addresses
        for key in [k for k, v in deps.failures.items() if not v][:5_000]:
            deps.failures.pop(key, None)


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
        out.append(
            {"name": name, "output_kind": getattr(wf, "output_kind", "image"), "params": params}
        )
    return web.json_response(out)


async def _status(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    if not deps.config.public_status:
        _user(request)
    counts = await asyncio.to_thread(deps.queue.counts)
    state = await asyncio.to_thread(deps.queue.get_state, *AUTOSCALER_STATE) or {}
    gpu = {k: state.get(k) for k in ("state", "eta_seconds", "updated_at") if k in state}
    return web.json_response({"jobs": {k.value: v for k, v in counts.items()}, "gpu": gpu})


async def _json_body(request: web.Request) -> Any:
    """Strict UTF-8 JSON no deeper than MAX_JSON_DEPTH (else a 400, never a 500)."""
    return _loads(await request.read())


def _loads(raw: bytes | str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8", hint="send JSON encoded as UTF-8") from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


def _depth(text: str) -> int:
    """Maximum bracket nesting, ignoring brackets inside strings (linear, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


@dataclass
class Submission:
    """One POST /api/jobs, from JSON or multipart."""

    workflow: str
    params: JSON
    image: bytes | None = None
    filename: str | None = None
    webhook: str | None = None  # completion webhook URL
    image_url: str | None = None  # input image to fetch


async def _read_submission(request: web.Request) -> Submission:
    """The submission from JSON ``{workflow, params, webhook?, image_url?}`` or multipart."""
    if request.content_type.startswith("multipart/"):
        form = await request.post()
        image = form.get("image")
        raw = form.get("params") or "{}"
        params = _params(_loads(raw if isinstance(raw, str) else "{}"))
        data = image.file.read() if isinstance(image, web.FileField) else None
        name = image.filename if isinstance(image, web.FileField) else None
        return Submission(
            str(form.get("workflow", "")), params, data, name,
            _text(form.get("webhook")), _text(form.get("image_url")),
        )  # fmt: skip
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise WorkflowError("body must be a JSON object {workflow, params}")
    return Submission(
        str(body.get("workflow", "")), _params(body.get("params") or {}),
        webhook=_text(body.get("webhook")), image_url=_text(body.get("image_url")),
    )  # fmt: skip


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WorkflowError("webhook and image_url must be URL strings")
    return value.strip()


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
    sub = await _read_submission(request)
    if sub.workflow not in deps.workflow_names:
        known = ", ".join(deps.workflow_names)
        raise WorkflowError(f"unknown workflow {sub.workflow!r}; offered here: {known}")
    wf = await asyncio.to_thread(deps.load_workflow, sub.workflow)
    _refuse_empty_prompt(wf, sub.params)
    if sub.webhook is not None:
        await _check_webhook(deps, sub.webhook)
    image, filename = sub.image, sub.filename
    if image is None and sub.image_url is not None:
        image, filename = await _fetch_image(deps, sub.image_url), urlsplit(sub.image_url).path
    images = {"image": image} if image is not None else None
    await asyncio.to_thread(wf.bind, sub.params, images)  # validate: nothing is queued on error
    fingerprint = _fingerprint(sub.workflow, sub.params, image, sub.webhook)
    inputs: dict[str, str] = {}
    if image is not None:
        ext = mimetypes.guess_extension(mimetypes.guess_type(filename or "")[0] or "") or ".png"
        key = f"{deps.input_prefix}{hashlib.sha256(image).hexdigest()}{ext}"
        await asyncio.to_thread(deps.storage.put_bytes, key, image)
        inputs["image"] = key
    job = await asyncio.to_thread(
        deps.queue.enqueue,
        sub.workflow,
        sub.params,
        inputs=inputs,
        front_door="web",
        user=user,
        client_key=_client_key(user, request.headers.get("Idempotency-Key")),
        meta={"request_sha256": fingerprint},
    )
    if job.meta.get("request_sha256", fingerprint) != fingerprint:
        raise IdempotencyConflict(
            f"Idempotency-Key was already used for a different request (job {job.id})",
            hint="use a new key for a new request",
        )
    if sub.webhook is not None:
        from nomad.serve.webhooks import register

        await asyncio.to_thread(register, deps.queue, job.id, sub.webhook)
    return web.json_response(await _job_doc(deps, job), status=202)


async def _check_webhook(deps: WebDeps, url: str) -> None:
    """Refuse at submit time what the sender would refuse later (nothing queued)."""
    from nomad.serve.webhooks import UrlRefused, resolve

    hooks = deps.webhooks
    if not deps.direct_webhooks:
        _no_direct_calls(deps, "webhook")
    if hooks is None or hooks.secret is None:
        raise WorkflowError(
            "this server sends no webhooks",
            hint="its operator sets webhooks.secret (NOMAD_WEBHOOK_SECRET)",
        )
    try:
        await resolve(url, schemes=("https", "http"), allow_private=hooks.allow_private)
    except UrlRefused as exc:
        raise WorkflowError(f"webhook: {exc.message}", hint=exc.hint) from None


def _no_direct_calls(deps: WebDeps, what: str) -> None:
    """With privacy on, an outbound call checked and pinned here would leave without the proxy."""
    if deps.privacy:
        raise WorkflowError(
            f"{what} is not available while privacy is enabled (it would bypass the proxy)"
            + (
                " — or set privacy.legs.webhooks: false to send them direct"
                if what == "webhook"
                else ""
            ),
            hint="upload the image / poll GET /api/jobs/{id} instead",
        )


async def _fetch_image(deps: WebDeps, url: str) -> bytes:
    """An input image by URL: allowed schemes, public addresses, at most max_upload_mb."""
    from nomad.serve.webhooks import UrlRefused, fetch_bytes

    cfg = deps.config
    _no_direct_calls(deps, "image_url")
    try:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False, trust_env=False) as client:
            return await fetch_bytes(
                url,
                client=client,
                max_bytes=int(cfg.max_upload_mb * 1024 * 1024),
                schemes=tuple(cfg.image_url_schemes),
                allow_private=cfg.image_url_allow_private,
            )
    except UrlRefused as exc:
        raise WorkflowError(f"image_url: {exc.message}", hint=exc.hint) from None


def _refuse_empty_prompt(wf: Any, params: JSON) -> None:
    """A blank prompt is a mistake (it would spend GPU time on noise): 400."""
    spec = getattr(wf, "params", {}).get("prompt")
    if spec is None:
        return
    value = params.get("prompt", getattr(spec, "default", None))
    if value is None or (isinstance(value, str) and not value.strip()):
        raise WorkflowError("the prompt is empty", hint="describe what you want to see")


def _fingerprint(workflow: str, params: JSON, image: bytes | None, webhook: str | None) -> str:
    """What makes two submissions "the same request" for Idempotency-Key replays."""
    doc = json.dumps([workflow, params, webhook], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(doc.encode())
    if image is not None:
        digest.update(hashlib.sha256(image).digest())
    return digest.hexdigest()


def _client_key(user: str, key: str | None) -> str | None:
    """Idempotency keys are per token: another user's same key must not return their job."""
    return f"{user}:{key}" if key else None


async def _job_doc(deps: WebDeps, job: Job) -> JSON:
    position = await asyncio.to_thread(deps.queue.position, job.id)
    return {
        "eta_seconds": await _eta(deps, job, position),
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
        "webhook": await _webhook_doc(deps, job),
    }


async def _webhook_doc(deps: WebDeps, job: Job) -> JSON | None:
    """The recorded webhook delivery of this job: outcome and attempts (no secret, no body)."""
    doc = await asyncio.to_thread(deps.queue.get_state, "webhook", job.id)
    if doc is None:
        return None
    return {
        "url": doc.get("url"),
        "outcome": doc.get("outcome"),
        "attempts": doc.get("attempts", []),
    }


async def _eta(deps: WebDeps, job: Job, position: int | None) -> float | None:
    """Rough seconds until this job is done: wake left + queue ahead + its run (learned medians)."""
    if job.status.finished:
        return None
    from nomad.serve.eta import EtaModel

    state = await asyncio.to_thread(deps.queue.get_state, *AUTOSCALER_STATE) or {}
    history = await asyncio.to_thread(deps.queue.get_state, "autoscaler", "history")
    model = EtaModel.from_json(history)
    cold = state.get("eta_seconds") if job.status is not JobStatus.RUNNING else None
    cold_left = float(cold) if isinstance(cold, int | float) else None
    if job.status is JobStatus.RUNNING:
        run = model.run_time(job.workflow, job.gpu)
        if run is None:
            return None
        return round(max(0.0, run * (1.0 - (job.progress or 0.0))))
    eta = model.wait(position or 1, 1, job.workflow, job.gpu, cold_left)
    return None if eta is None else round(eta)


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
