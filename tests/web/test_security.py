"""The web door is safe to expose: rate limits, headers, strict bodies, idempotency conflicts, token config."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from nomad.config.schema import WebConfig
from nomad.queue import open_queue
from nomad.queue.base import JobQueue
from nomad.web.app import MAX_JSON_DEPTH, WebDeps, make_app
from nomad.workflows import load_workflow

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"workflow": "flux_schnell", "params": {"prompt": "a lighthouse"}}


class Clock:
    """A hand-moved clock for the auth-failure window."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = open_queue(None, tmp_path)
    yield q
    q.close()


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
async def client(queue: JobQueue, storage: Any, clock: Clock) -> AsyncIterator[TestClient]:
    deps = WebDeps(
        config=WebConfig(max_upload_mb=1, auth_failures_per_minute=5),
        queue=queue,
        storage=storage,
        load_workflow=load_workflow,
        workflow_names=["flux_schnell"],
        tokens=[TOKEN],
        clock=clock,
    )
    async with TestClient(TestServer(make_app(deps))) as c:
        yield c


async def test_wrong_tokens_are_rate_limited(client: TestClient, clock: Clock) -> None:
    """After 5 wrong tokens in a minute even the right token gets 429 (Retry-After) until the window passes."""
    bad = {"Authorization": "Bearer guess"}
    statuses = [(await client.post("/api/jobs", json=BODY, headers=bad)).status for _ in range(7)]
    assert statuses == [403] * 5 + [429] * 2
    limited = await client.post("/api/jobs", json=BODY, headers=AUTH)
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    clock.now += 61
    assert (await client.post("/api/jobs", json=BODY, headers=AUTH)).status == 202


async def test_security_headers_and_no_versions(client: TestClient) -> None:
    """Page and API answers carry nosniff, frame denial, a CSP; Server names no version."""
    for path in ("/", "/api/health", "/api/workflows"):
        r = await client.get(path)
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Server"] == "nomad"
    assert (await client.get("/api/health")).headers["Cache-Control"] == "no-store"
    assert (await client.get("/nope")).headers["Server"] == "nomad"  # errors too


async def test_status_needs_a_token(queue: JobQueue, storage: Any) -> None:
    """/api/status answers 401 without a token unless web.public_status is set."""
    for public, expected in ((False, 401), (True, 200)):
        deps = WebDeps(
            config=WebConfig(public_status=public),
            queue=queue,
            storage=storage,
            load_workflow=load_workflow,
            workflow_names=["flux_schnell"],
            tokens=[TOKEN],
        )
        async with TestClient(TestServer(make_app(deps))) as c:
            assert (await c.get("/api/status")).status == expected
            assert (await c.get("/api/status", headers=AUTH)).status == 200


async def test_idempotency_key_with_a_different_body_is_422(
    client: TestClient, queue: JobQueue
) -> None:
    """Same key + same body ⇒ the same job (202); same key + another body ⇒ 422, nothing queued."""
    headers = {**AUTH, "Idempotency-Key": "k-7"}
    first = await client.post("/api/jobs", json=BODY, headers=headers)
    again = await client.post("/api/jobs", json=BODY, headers=headers)
    assert first.status == again.status == 202
    other = {"workflow": "flux_schnell", "params": {"prompt": "a different thing"}}
    conflict = await client.post("/api/jobs", json=other, headers=headers)
    assert conflict.status == 422 and "Idempotency-Key" in (await conflict.json())["error"]
    assert len(queue.list()) == 1


async def test_bad_bodies_are_400_without_traceback(
    client: TestClient, queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """Invalid UTF-8 and deeply nested JSON are a 400 with one line; no traceback is logged."""
    headers = {**AUTH, "Content-Type": "application/json"}
    latin = '{"workflow": "flux_schnell", "params": {"prompt": "caf\xe9"}}'.encode("latin-1")
    deep = (
        '{"workflow": "flux_schnell", "params": {"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    )
    for body in (latin, deep.encode(), b"\xff\xfe{"):
        r = await client.post("/api/jobs", data=body, headers=headers)
        assert r.status == 400, await r.text()
        assert "error" in await r.json()
    nested = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    assert (await client.post("/api/jobs", data=nested, headers=headers)).status == 400
    assert "Traceback" not in caplog.text and queue.list() == []


async def test_empty_prompt_is_refused(client: TestClient, queue: JobQueue) -> None:
    """A blank prompt is a 400 naming the prompt, and nothing is queued."""
    for prompt in ("", "   "):
        body = {"workflow": "flux_schnell", "params": {"prompt": prompt}}
        r = await client.post("/api/jobs", json=body, headers=AUTH)
        assert r.status == 400 and "prompt" in (await r.json())["error"]
    assert queue.list() == []


async def test_job_shows_position_and_eta(client: TestClient, queue: JobQueue) -> None:
    """A waiting job reports its queue position and an ETA from the learned medians."""
    queue.put_state(
        "autoscaler", "history", {"cold_starts": [90.0], "run_times": {"flux_schnell@?": [20.0]}}
    )
    queue.put_state("autoscaler", "status", {"state": "waking", "eta_seconds": 60.0})
    job = await (await client.post("/api/jobs", json=BODY, headers=AUTH)).json()
    assert job["position"] == 1 and job["eta_seconds"] == 80


async def test_int_bounds_are_ints(client: TestClient) -> None:
    """/api/workflows shows integer bounds as JSON integers (the seed max is not a float)."""
    [wf] = await (await client.get("/api/workflows")).json()
    seed = wf["params"]["seed"]
    assert isinstance(seed["max"], int) and isinstance(seed["min"], int)


def test_blank_tokens_are_refused_at_config_load(tmp_path: Path) -> None:
    """`web.tokens: [""]` (or a short token) is a config error naming the key, not an open door."""
    from nomad.config.load import load_config
    from nomad.errors import ConfigError

    for tokens in ('[""]', '["   "]', '["abc"]'):
        path = tmp_path / "nomad.yaml"
        path.write_text(f"project: p\nweb:\n  tokens: {tokens}\n")
        with pytest.raises(ConfigError, match=r"web\.tokens"):
            load_config(path)
