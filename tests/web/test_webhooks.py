"""API users: completion webhooks (signed, retried, recorded) and input images by URL, SSRF-safe.

Real pieces: the web door (aiohttp test server), the SQLite queue, the
embedded S3, a receiver that is a real aiohttp server on loopback, httpx.
Loopback is private, so every test that *delivers* to it sets
``allow_private`` explicitly; the refusal tests leave it off.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from nomad.config.schema import WebConfig, WebhooksConfig
from nomad.queue import open_queue
from nomad.queue.base import JobQueue
from nomad.serve.webhooks import SIGNATURE_HEADER, WebhookSender, register, verify
from nomad.web.app import WebDeps, make_app
from nomad.workflows import load_workflow

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "whsec-test-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Receiver:
    """A webhook receiver on loopback that fails the first ``fail`` requests with 500."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.served = 0

    async def hook(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if len(self.requests) <= self.fail:
            return web.Response(status=500)
        return web.Response(status=204)

    async def image(self, request: web.Request) -> web.Response:
        self.served += 1
        size = int(request.query.get("size", len(PNG)))
        return web.Response(body=PNG + b"\x00" * max(0, size - len(PNG)), content_type="image/png")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = open_queue(None, tmp_path)
    yield q
    q.close()


@pytest.fixture()
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver(fail=2)
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    app.router.add_get("/img.png", rec.image)
    async with TestServer(app, host="127.0.0.1") as server:
        yield rec, str(server.make_url("/")).rstrip("/")


def web_client(queue: JobQueue, storage: Any, *, allow_private: bool) -> TestClient:
    deps = WebDeps(
        config=WebConfig(
            max_upload_mb=1,
            image_url_schemes=["https", "http"],
            image_url_allow_private=allow_private,
        ),
        queue=queue,
        storage=storage,
        load_workflow=load_workflow,
        workflow_names=["flux_schnell", "qwen_image_edit"],
        tokens=[TOKEN],
        webhooks=WebhooksConfig(secret=SecretStr(SECRET), allow_private=allow_private),
    )
    return TestClient(TestServer(make_app(deps)))


def finish(queue: JobQueue, job_id: str) -> None:
    leased = queue.lease("w")
    assert leased is not None and leased.id == job_id and leased.lease_token
    queue.complete(job_id, leased.lease_token, outputs=["outputs/x/0.png"])


async def test_webhook_retried_then_delivered_once_signed(
    queue: JobQueue, storage: Any, receiver: tuple[Receiver, str]
) -> None:
    """The receiver fails twice: the sender backs off, delivers on the 3rd try, once, with a valid signature; all recorded."""
    rec, base = receiver
    async with web_client(queue, storage, allow_private=True) as client:
        body = {
            "workflow": "flux_schnell",
            "params": {"prompt": "a cat"},
            "webhook": f"{base}/hook",
        }
        job = await (await client.post("/api/jobs", json=body, headers=AUTH)).json()
        clock = Clock()
        async with httpx.AsyncClient(trust_env=False) as http:
            sender = WebhookSender(queue, SECRET, client=http, allow_private=True, clock=clock)
            assert await sender.tick() == 0 and rec.requests == []  # not finished: nothing sent
            finish(queue, job["id"])
            assert await sender.tick() == 0 and len(rec.requests) == 1  # 500
            assert await sender.tick() == 0 and len(rec.requests) == 1  # backing off
            clock.now += 5
            assert await sender.tick() == 0 and len(rec.requests) == 2  # 500 again
            clock.now += 9
            assert await sender.tick() == 0 and len(rec.requests) == 2  # backoff doubled (10 s)
            clock.now += 1
            assert await sender.tick() == 1 and len(rec.requests) == 3  # delivered
            clock.now += 3600
            assert await sender.tick() == 0 and len(rec.requests) == 3  # never again
        shown = await (await client.get(f"/api/jobs/{job['id']}", headers=AUTH)).json()
    headers, payload = rec.requests[-1]
    assert verify(SECRET, headers[SIGNATURE_HEADER], payload, now=clock.now - 3600)
    assert not verify("another-secret", headers[SIGNATURE_HEADER], payload, now=clock.now - 3600)
    assert b'"status": "succeeded"' in payload and job["id"].encode() in payload
    assert {h["X-Nomad-Delivery"] for h, _ in rec.requests} == {job["id"]}
    assert shown["webhook"]["outcome"] == "delivered"
    assert [a.get("status") for a in shown["webhook"]["attempts"]] == [500, 500, 204]


async def test_private_webhook_refused_at_submit(
    queue: JobQueue, storage: Any, receiver: tuple[Receiver, str]
) -> None:
    """Without allow_private a loopback webhook URL is a 400 and nothing is queued."""
    _, base = receiver
    async with web_client(queue, storage, allow_private=False) as client:
        for url in (f"{base}/hook", "http://169.254.169.254/latest", "ftp://example.com/x"):
            body = {"workflow": "flux_schnell", "params": {"prompt": "a cat"}, "webhook": url}
            r = await client.post("/api/jobs", json=body, headers=AUTH)
            assert r.status == 400 and "webhook" in (await r.json())["error"]
    assert queue.list() == []


async def test_sender_never_calls_a_private_address(
    queue: JobQueue, receiver: tuple[Receiver, str]
) -> None:
    """A registered webhook that resolves to loopback (e.g. DNS changed) is recorded as refused, never sent."""
    rec, base = receiver
    job = queue.enqueue("flux_schnell", {"prompt": "x"})
    register(queue, job.id, f"{base}/hook")
    finish(queue, job.id)
    async with httpx.AsyncClient(trust_env=False) as http:
        sender = WebhookSender(queue, SECRET, client=http, allow_private=False)
        assert await sender.tick() == 0
        assert await sender.tick() == 0
    assert rec.requests == []
    doc = queue.get_state("webhook", job.id)
    assert (
        doc is not None and doc["outcome"] == "failed" and "private" in doc["attempts"][0]["error"]
    )
    assert queue.get_state("webhook", "pending") == {"jobs": []}


async def test_image_by_url(queue: JobQueue, storage: Any, receiver: tuple[Receiver, str]) -> None:
    """image_url is fetched when allowed; refused for private targets, other schemes and oversize (nothing queued)."""
    rec, base = receiver
    body = {"workflow": "qwen_image_edit", "params": {"prompt": "a hat"}}
    async with web_client(queue, storage, allow_private=False) as client:
        r = await client.post(
            "/api/jobs", json={**body, "image_url": f"{base}/img.png"}, headers=AUTH
        )
        assert r.status == 400 and "private" in (await r.json())["error"]
        r = await client.post(
            "/api/jobs", json={**body, "image_url": "file:///etc/passwd"}, headers=AUTH
        )
        assert r.status == 400 and "scheme" in (await r.json())["error"]
    assert rec.served == 0 and queue.list() == []
    async with web_client(queue, storage, allow_private=True) as client:
        big = f"{base}/img.png?size={2 * 1024 * 1024}"
        r = await client.post("/api/jobs", json={**body, "image_url": big}, headers=AUTH)
        assert r.status == 400 and "larger than" in (await r.json())["error"]
        r = await client.post(
            "/api/jobs", json={**body, "image_url": f"{base}/img.png"}, headers=AUTH
        )
        assert r.status == 202, await r.text()
    [job] = queue.list()
    assert storage.get_bytes(job.inputs["image"]) == PNG


async def test_serve_runs_the_sender(queue: JobQueue, receiver: tuple[Receiver, str]) -> None:
    """`nomad serve`'s webhook door delivers a finished job's webhook on its own (after the receiver's 2 failures)."""
    from nomad.config.schema import NomadConfig
    from nomad.serve.webhooks import webhook_door
    from nomad.testing.wait import eventually_async

    rec, base = receiver
    rec.fail = 0
    cfg = NomadConfig.model_validate({"webhooks": {"secret": SECRET, "allow_private": True}})
    job = queue.enqueue("flux_schnell", {"prompt": "x"})
    register(queue, job.id, f"{base}/hook")
    finish(queue, job.id)
    async with webhook_door(cfg, queue, interval=0.05):
        await eventually_async(lambda: rec.requests, timeout=20, what="the webhook")
    doc = queue.get_state("webhook", job.id)
    assert doc is not None and doc["outcome"] == "delivered" and len(rec.requests) == 1


async def test_privacy_on_refuses_outbound_calls(queue: JobQueue, storage: Any) -> None:
    """With privacy enabled the door refuses webhook and image_url (a direct call would bypass the proxy)."""
    deps = WebDeps(
        config=WebConfig(image_url_schemes=["https", "http"], image_url_allow_private=True),
        queue=queue,
        storage=storage,
        load_workflow=load_workflow,
        workflow_names=["flux_schnell", "qwen_image_edit"],
        tokens=[TOKEN],
        webhooks=WebhooksConfig(secret=SecretStr(SECRET), allow_private=True),
        privacy=True,
    )
    async with TestClient(TestServer(make_app(deps))) as client:
        for extra in (
            {"webhook": "https://example.com/h"},
            {"image_url": "https://example.com/a.png"},
        ):
            body = {"workflow": "qwen_image_edit", "params": {"prompt": "a hat"}, **extra}
            r = await client.post("/api/jobs", json=body, headers=AUTH)
            assert r.status == 400 and "privacy" in (await r.json())["error"]
    assert queue.list() == []
