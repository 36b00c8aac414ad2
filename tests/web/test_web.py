"""Web front door against the real SQLite queue, real S3 (embedded stack) and the real workflow library."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from nomad.config.schema import WebConfig
from nomad.queue import open_queue
from nomad.queue.base import JobQueue, JobStatus
from nomad.web.app import WebDeps, make_app
from nomad.workflows import load_workflow

pytestmark = pytest.mark.integration
TOKEN = "t0ken-for-tests"
OTHER = "another-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture()
def queue(tmp_path: Path) -> JobQueue:
    q = open_queue(None, tmp_path)
    yield q
    q.close()


@pytest.fixture()
async def client(queue: JobQueue, storage) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    deps = WebDeps(
        config=WebConfig(max_upload_mb=1),
        queue=queue,
        storage=storage,
        load_workflow=load_workflow,
        workflow_names=["flux_schnell", "qwen_image_edit"],
        tokens=[TOKEN, OTHER],
    )
    async with TestClient(TestServer(make_app(deps))) as c:
        yield c


async def test_page_and_workflows(client: TestClient) -> None:
    """The page is served and the API lists the offered workflows with parameters."""
    page = await client.get("/")
    assert page.status == 200 and "Generate" in await page.text()
    wfs = await (await client.get("/api/workflows")).json()
    assert [w["name"] for w in wfs] == ["flux_schnell", "qwen_image_edit"]
    assert "prompt" in wfs[0]["params"] and "image" in wfs[1]["params"]


async def test_submit_needs_token(client: TestClient, queue: JobQueue) -> None:
    """No token ⇒ 401, a wrong one ⇒ 403; nothing is queued either way."""
    body = {"workflow": "flux_schnell", "params": {"prompt": "x"}}
    assert (await client.post("/api/jobs", json=body)).status == 401
    bad = await client.post("/api/jobs", json=body, headers={"Authorization": "Bearer nope"})
    assert bad.status == 403
    assert queue.list() == []


async def test_submit_and_follow(client: TestClient, queue: JobQueue) -> None:
    """A valid submission is queued (202) from the web door and can be followed by id."""
    r = await client.post(
        "/api/jobs",
        json={"workflow": "flux_schnell", "params": {"prompt": "an astronaut"}},
        headers=AUTH,
    )
    assert r.status == 202, await r.text()
    doc = await r.json()
    job = queue.get(doc["id"])
    assert job.front_door == "web" and job.params == {"prompt": "an astronaut"}
    got = await (await client.get(f"/api/jobs/{doc['id']}", headers=AUTH)).json()
    assert got["status"] == "queued" and got["position"] == 1


async def test_bad_parameters_queue_nothing(client: TestClient, queue: JobQueue) -> None:
    """Unknown workflow, unknown option and out-of-range values are 400 with a message; nothing queued."""
    cases = [
        {"workflow": "nope", "params": {"prompt": "x"}},
        {"workflow": "flux_schnell", "params": {"prompt": "x", "colour": "red"}},
        {"workflow": "flux_schnell", "params": {"prompt": "x", "steps": 100000}},
        {"workflow": "flux_schnell", "params": "a string"},
        {"workflow": "flux_schnell", "params": [["prompt", "x"], [1, 2]]},
    ]
    for body in cases:
        r = await client.post("/api/jobs", json=body, headers=AUTH)
        assert r.status == 400, body
        assert (await r.json())["error"]
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("workflow", "flux_schnell")
    form.add_field("params", "[1, 2]")
    r = await client.post("/api/jobs", data=form, headers=AUTH)
    assert r.status == 400 and "JSON object" in (await r.json())["error"]
    assert queue.list() == []


async def test_image_upload_goes_to_s3(client: TestClient, queue: JobQueue, storage) -> None:  # type: ignore[no-untyped-def]
    """An edit job's uploaded image is stored in S3 byte for byte and referenced by the job."""
    form = aiohttp.FormData()
    form.add_field("workflow", "qwen_image_edit")
    form.add_field("params", '{"prompt": "put a t-shirt on him"}')
    form.add_field("image", PNG, filename="me.png", content_type="image/png")
    r = await client.post("/api/jobs", data=form, headers=AUTH)
    assert r.status == 202, await r.text()
    job = queue.get((await r.json())["id"])
    assert storage.get_bytes(job.inputs["image"]) == PNG


async def test_oversized_upload_is_413(client: TestClient, queue: JobQueue) -> None:
    """An upload over the limit gets a JSON 413 naming the limit; nothing queued."""
    form = aiohttp.FormData()
    form.add_field("workflow", "qwen_image_edit")
    form.add_field(
        "image", b"\x00" * (2 * 1024 * 1024), filename="big.png", content_type="image/png"
    )
    r = await client.post("/api/jobs", data=form, headers=AUTH)
    assert r.status == 413
    assert "1 MB" in (await r.json())["error"]
    assert queue.list() == []


async def test_outputs_served_and_private(client: TestClient, queue: JobQueue, storage) -> None:  # type: ignore[no-untyped-def]
    """A finished job's output bytes are served to its owner only."""
    r = await client.post(
        "/api/jobs", json={"workflow": "flux_schnell", "params": {"prompt": "x"}}, headers=AUTH
    )
    job_id = (await r.json())["id"]
    storage.put_bytes(f"outputs/{job_id}/0.png", PNG)
    leased = queue.lease("w")
    assert leased is not None and leased.lease_token
    assert queue.complete(job_id, leased.lease_token, outputs=[f"outputs/{job_id}/0.png"])
    doc = await (await client.get(f"/api/jobs/{job_id}", headers=AUTH)).json()
    assert doc["status"] == JobStatus.SUCCEEDED.value
    out = await client.get(doc["outputs"][0], headers=AUTH)
    assert out.status == 200 and out.content_type == "image/png" and await out.read() == PNG
    other = await client.get(f"/api/jobs/{job_id}", headers={"Authorization": f"Bearer {OTHER}"})
    assert other.status == 404


async def test_idempotency_key(client: TestClient, queue: JobQueue) -> None:
    """Retrying a submission with the same Idempotency-Key returns the same job."""
    body = {"workflow": "flux_schnell", "params": {"prompt": "x"}}
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    a = await (await client.post("/api/jobs", json=body, headers=headers)).json()
    b = await (await client.post("/api/jobs", json=body, headers=headers)).json()
    assert a["id"] == b["id"] and len(queue.list()) == 1
    other = {"Authorization": f"Bearer {OTHER}", "Idempotency-Key": "k-1"}
    c = await client.post("/api/jobs", json=body, headers=other)
    assert c.status == 202 and (await c.json())["id"] != a["id"]  # keys are per token
    assert len(queue.list()) == 2


def test_broken_workflow_in_dirs_is_not_offered(tmp_path: Path) -> None:
    """A binding whose graph is missing is left out of the offered list (it broke /api/workflows)."""
    from nomad.config.schema import NomadConfig
    from nomad.web.deps import build_deps

    (tmp_path / "broken.yaml").write_text("name: broken\ngraph: missing.json\nparams: {}\n")
    cfg = NomadConfig.model_validate(
        {"workflows": {"dirs": [str(tmp_path)]}, "storage": {"endpoint_url": "http://127.0.0.1:1"}}
    )
    deps = build_deps(cfg, tmp_path / "data")
    try:
        assert "broken" not in deps.workflow_names and "flux_schnell" in deps.workflow_names
    finally:
        deps.queue.close()
