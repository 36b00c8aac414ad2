"""Completion webhooks for API users, and fetching input images by URL — both SSRF-safe.

A job submitted with a webhook URL (web door: ``"webhook": "https://…"``) is
registered here; ``nomad serve`` runs :class:`WebhookSender`, which POSTs one
JSON document per finished job (succeeded, failed or cancelled):

- signed: ``X-Nomad-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
  (check it with :func:`verify`; reject old ``t`` to stop replays);
- retried with exponential backoff on connection errors and non-2xx answers,
  up to ``webhooks.max_attempts``; ``X-Nomad-Delivery`` is the same for every
  attempt of one job, so a receiver can drop duplicates;
- recorded: the state document ``webhook/<job id>`` keeps every attempt
  (time, status or error) and the outcome; the pending list lives in the
  queue's database, so a restarted serve carries on where it stopped.

Outbound URLs (webhooks and input images) go only to public addresses: the
host is resolved once, every address must be public (no loopback, private,
link-local, multicast, reserved — unless ``allow_private``), and the request
is sent to that checked address (``Host`` and TLS SNI keep the name), so a
DNS answer that changes between check and connect cannot redirect it.
Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from nomad.errors import UsageError
from nomad.queue.base import Job, JobQueue

log = logging.getLogger("nomad.webhooks")

SCOPE = "webhook"
PENDING = (SCOPE, "pending")
SIGNATURE_HEADER = "X-Nomad-Signature"


class UrlRefused(UsageError):
    """An outbound URL nomad will not call (scheme, private address, unresolvable)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``url``, an IP) and the name it stands for."""

    url: str
    host: str  # the Host header
    sni: str | None  # TLS server name (https only)


async def resolve(url: str, *, schemes: tuple[str, ...], allow_private: bool) -> Target:
    """Check ``url`` and pin it to one public address (raises :class:`UrlRefused`)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UrlRefused(
            f"URL scheme {scheme or '(none)'}:// is not allowed", hint=f"use {' or '.join(schemes)}"
        )
    host = parts.hostname
    if not host or parts.username or parts.password:
        raise UrlRefused(
            "URL needs a host and no user:password@", hint="e.g. https://example.com/hook"
        )
    port = parts.port or (443 if scheme == "https" else 80)
    try:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlRefused(f"cannot resolve {host}: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses:
        raise UrlRefused(f"cannot resolve {host}")
    for address in addresses:
        if not allow_private and not _public(address):
            raise UrlRefused(
                f"{host} resolves to a private or local address ({address})",
                hint="nomad only calls public addresses (config: allow_private for your own network)",
            )
    ip = ipaddress.ip_address(addresses[0])
    netloc = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
    pinned = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    default = port == (443 if scheme == "https" else 80)
    host_header = host if default else f"{host}:{port}"
    return Target(pinned, host_header, host if scheme == "https" else None)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _request_kwargs(target: Target) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"headers": {"Host": target.host}}
    if target.sni:
        kwargs["extensions"] = {"sni_hostname": target.sni}
    return kwargs


async def fetch_bytes(
    url: str,
    *,
    client: httpx.AsyncClient,
    max_bytes: int,
    schemes: tuple[str, ...] = ("https",),
    allow_private: bool = False,
) -> bytes:
    """GET ``url`` (checked, pinned, no redirects), refusing more than ``max_bytes``."""
    target = await resolve(url, schemes=schemes, allow_private=allow_private)
    try:
        async with client.stream("GET", target.url, **_request_kwargs(target)) as response:
            if response.status_code != 200:
                raise UrlRefused(f"{url} answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise UrlRefused(_too_big(url, max_bytes))
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise UrlRefused(_too_big(url, max_bytes))
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise UrlRefused(f"cannot fetch {url}: {type(exc).__name__}") from None
    return b"".join(chunks)


def _too_big(url: str, max_bytes: int) -> str:
    return f"{url} is larger than {max_bytes / 2**20:g} MB"


# ---- signing -----------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Nomad-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300.0) -> bool:
    """Receiver side: the signature matches and is at most ``tolerance`` seconds old."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(
        sign(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}"
    )


# ---- delivery ----------------------------------------------------------------------------


def register(queue: JobQueue, job_id: str, url: str) -> None:
    """Remember that ``job_id`` wants a completion webhook (idempotent)."""
    if queue.get_state(SCOPE, job_id) is None:
        queue.put_state(
            SCOPE, job_id, {"url": url, "attempts": [], "next_at": 0.0, "outcome": None}
        )
    pending = [str(i) for i in (queue.get_state(*PENDING) or {}).get("jobs", [])]
    if job_id not in pending:
        queue.put_state(*PENDING, {"jobs": [*pending, job_id]})


def payload(job: Job) -> dict[str, Any]:
    """What the receiver gets: the job's outcome, never its inputs' bytes."""
    return {
        "event": "job.finished",
        "job": {
            "id": job.id,
            "workflow": job.workflow,
            "status": job.status.value,
            "error": job.error,
            "outputs": [f"/api/jobs/{job.id}/outputs/{i}" for i in range(len(job.outputs))],
            "times": job.times,
            "cost": job.cost,
        },
    }


class WebhookSender:
    """Delivers pending webhooks of finished jobs; one :meth:`tick` is one pass."""

    def __init__(
        self,
        queue: JobQueue,
        secret: str,
        *,
        client: httpx.AsyncClient,
        allow_private: bool = False,
        max_attempts: int = 6,
        backoff: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue, self.secret, self.client = queue, secret, client
        self.allow_private = allow_private
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.clock = clock

    async def tick(self) -> int:
        """Try every due delivery once; returns how many were delivered now."""
        pending = (await asyncio.to_thread(self.queue.get_state, *PENDING) or {}).get("jobs", [])
        delivered = 0
        for job_id in [str(i) for i in pending]:
            doc = await asyncio.to_thread(self.queue.get_state, SCOPE, job_id)
            if doc is None or doc.get("outcome") is not None:
                await self._done(job_id)
                continue
            if self.clock() < float(doc.get("next_at") or 0.0):
                continue
            job = await asyncio.to_thread(self.queue.get, job_id)
            if not job.status.finished:
                continue
            delivered += await self._attempt(job, doc)
        return delivered

    async def _attempt(self, job: Job, doc: dict[str, Any]) -> int:
        now = self.clock()
        body = json.dumps(payload(job), sort_keys=True).encode()
        attempts: list[dict[str, Any]] = list(doc.get("attempts") or [])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "nomad-webhook",
            "X-Nomad-Event": "job.finished",
            "X-Nomad-Delivery": job.id,
            SIGNATURE_HEADER: sign(self.secret, int(now), body),
        }
        record: dict[str, Any] = {"at": now}
        ok = final = False
        try:
            target = await resolve(
                str(doc["url"]), schemes=("https", "http"), allow_private=self.allow_private
            )
            kwargs = _request_kwargs(target)
            kwargs["headers"] = {**headers, **kwargs["headers"]}
            response = await self.client.post(target.url, content=body, **kwargs)
            record["status"] = response.status_code
            ok = 200 <= response.status_code < 300
        except UrlRefused as exc:
            record["error"], final = exc.message, True  # a private target never becomes public
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:300]
        attempts.append(record)
        doc["attempts"] = attempts
        if ok or final or len(attempts) >= self.max_attempts:
            doc["outcome"] = "delivered" if ok else "failed"
            if not ok:
                log.warning("webhook for job %s given up: %s", job.id, record)
        else:
            doc["next_at"] = now + self.backoff * 2 ** (len(attempts) - 1)
        await asyncio.to_thread(self.queue.put_state, SCOPE, job.id, doc)
        if doc["outcome"] is not None:
            await self._done(job.id)
        return 1 if ok else 0

    async def _done(self, job_id: str) -> None:
        pending = (await asyncio.to_thread(self.queue.get_state, *PENDING) or {}).get("jobs", [])
        if job_id in pending:
            rest = [i for i in pending if i != job_id]
            await asyncio.to_thread(self.queue.put_state, *PENDING, {"jobs": rest})

    async def run(self, stop: asyncio.Event, interval: float = 2.0) -> None:
        """Tick until ``stop`` is set; one bad pass is logged, never fatal."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:  # the queue may be briefly away; try again next pass
                log.exception("webhook pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()


@contextlib.asynccontextmanager
async def webhook_door(cfg: Any, queue: JobQueue, *, interval: float = 2.0) -> AsyncIterator[None]:
    """Run the sender inside ``nomad serve`` when ``webhooks.secret`` is set (else nothing).

    Not with ``privacy.enabled`` unless ``privacy.legs.webhooks: false``: the SSRF check
    pins the IP it resolved here, which a SOCKS5h route (names resolved at the proxy) cannot
    honour, so webhooks are never sent through the proxy — they are off (the web door
    refuses webhook URLs, so none are pending), or, with that leg off, sent direct.
    """
    from nomad import privacy

    hooks = cfg.webhooks
    direct = "webhooks" in privacy.direct_legs(cfg.privacy)
    if hooks.secret is None or (cfg.privacy.enabled and not direct):
        if hooks.secret is not None:
            log.warning(
                "webhooks are off while privacy is enabled (they would bypass the proxy); "
                "privacy.legs.webhooks: false sends them direct"
            )
        yield
        return
    if direct:
        privacy.proxy_for(cfg.privacy, "webhooks")  # warns once: this leg goes direct
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        timeout=hooks.timeout_seconds, follow_redirects=False, trust_env=False
    ) as client:
        sender = WebhookSender(
            queue,
            hooks.secret.get_secret_value(),
            client=client,
            allow_private=hooks.allow_private,
            max_attempts=hooks.max_attempts,
        )
        task = asyncio.create_task(sender.run(stop, interval))
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await task
