"""Workers against FakeComfy (a ComfyUI protocol double, in-process) and the real SQLite queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import JobStatus, open_queue
from nomad.queue._sql import SqlQueue
from nomad.serve.runner import ComfyRunner
from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually_async

GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": 1,
            "steps": 4,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "t"}},
}


class MemoryOutputs:
    """OutputStore double: a dict (these tests are about workers, not S3)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> str:
        self.objects[key] = data
        return key

    def get(self, key: str) -> bytes:
        return self.objects[key]


async def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Bounded wait for a condition, yielding to the event loop between looks."""
    return await eventually_async(
        lambda: asyncio.to_thread(check), timeout=timeout, interval=0.02, what=what
    )


@pytest.fixture
def queue(tmp_path: Path) -> SqlQueue:
    q = open_queue(None, tmp_path, lease_seconds=30)
    assert isinstance(q, SqlQueue)
    return q


@pytest.fixture
def graph_file(tmp_path: Path) -> str:
    path = tmp_path / "g.json"
    path.write_text(json.dumps(GRAPH))
    return str(path)


def fast_config(**kw: Any) -> PoolConfig:
    """Pool settings for tests: quick beats, polls and backoffs."""
    base: dict[str, Any] = {
        "lease_seconds": 30,
        "heartbeat_seconds": 0.05,
        "idle_poll_seconds": 0.05,
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
    }
    return PoolConfig(**{**base, **kw})


def pool_for(queue: SqlQueue, store: MemoryOutputs) -> WorkerPool:
    return WorkerPool(queue, ComfyRunner(store), store, config=fast_config())


async def test_job_runs_on_comfy_with_timings_cost_and_output(
    queue: SqlQueue, graph_file: str
) -> None:
    """A job runs through the real ComfyClient on FakeComfy: output stored, phases stamped, cost charged."""
    store = MemoryOutputs()
    pool = pool_for(queue, store)
    async with FakeComfy() as fc:
        job = queue.enqueue(graph_file, {})
        pool.start_cluster(ClusterRuntime("c", [fc.url], price_per_hour=3.6, gpu="fake"))
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    done = queue.get(job.id)
    assert done.outputs == [f"outputs/{job.id}/0.png"] and store.objects[
        done.outputs[0]
    ].startswith(b"\x89PNG")
    assert {"started_at", "uploaded_at", "executing_at", "executed_at", "finished_at"} <= set(
        done.times
    )
    assert done.gpu == "fake" and done.cost is not None and done.cost > 0 and done.progress == 1.0


async def test_cancel_running_job_interrupts_comfy(queue: SqlQueue, graph_file: str) -> None:
    """Cancelling a running job: the heartbeat notices, ComfyUI gets /interrupt, nothing is stored."""
    store = MemoryOutputs()
    pool = pool_for(queue, store)
    async with FakeComfy(hold_at_step=1, hold_timeout=30) as fc:
        job = queue.enqueue(graph_file, {})
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("progress published", lambda: (queue.get(job.id).progress or 0) > 0)
        assert queue.get(job.id).progress == 0.25
        queue.cancel(job.id)
        await until(
            "ComfyUI interrupted", lambda: "execution_interrupted" in json.dumps(fc.history)
        )
        await until("worker idle", lambda: pool.busy == 0)
        await pool.shutdown(1.0)
    assert queue.get(job.id).status is JobStatus.CANCELLED and store.objects == {}


async def test_shutdown_gives_running_job_back(queue: SqlQueue, graph_file: str) -> None:
    """Graceful shutdown with a job still running past the grace period: it is requeued, attempt not charged."""
    store = MemoryOutputs()
    pool = pool_for(queue, store)
    async with FakeComfy(hold_at_step=1, hold_timeout=30) as fc:
        job = queue.enqueue(graph_file, {})
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job running", lambda: (queue.get(job.id).progress or 0) > 0)
        await pool.shutdown(0.05)
        fc.release()
    back = queue.get(job.id)
    assert (
        back.status is JobStatus.QUEUED
        and back.attempts == 0
        and "shut down" in (back.detail or "")
    )


async def test_bad_graph_fails_without_retry(queue: SqlQueue, tmp_path: Path) -> None:
    """A graph ComfyUI rejects (validation) fails the job at once with ComfyUI's reason."""
    bad = {"1": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    pool = pool_for(queue, MemoryOutputs())
    async with FakeComfy() as fc:
        job = queue.enqueue(str(path), {})
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job failure", lambda: queue.get(job.id).status is JobStatus.FAILED)
        await pool.shutdown(1.0)
    failed = queue.get(job.id)
    assert failed.attempts == 1 and failed.error


class CountingRunner(ComfyRunner):
    """ComfyRunner that records every run it is asked to do."""

    def __init__(self, store: MemoryOutputs) -> None:
        super().__init__(store)
        self.calls: list[str] = []

    async def run(self, job: Any, endpoint: str, progress: Any) -> Any:
        self.calls.append(job.id)
        return await super().run(job, endpoint, progress)


async def test_dead_endpoint_gets_no_job(queue: SqlQueue, graph_file: str) -> None:
    """An endpoint never seen healthy that does not answer /system_stats is not given the job: it
    goes straight back to the queue, attempt refunded, and nothing is run against it."""
    runner = CountingRunner(MemoryOutputs())
    pool = WorkerPool(queue, runner, runner.store, config=fast_config())  # type: ignore[arg-type]
    job = queue.enqueue(graph_file, {}, max_attempts=1)
    pool.start_cluster(ClusterRuntime("c", ["http://127.0.0.1:9"]))
    await until("job handed back", lambda: "did not answer" in (queue.get(job.id).detail or ""))
    await pool.shutdown(0.0)
    got = queue.get(job.id)
    assert got.status is JobStatus.QUEUED and got.attempts == 0 and runner.calls == []


async def test_endpoint_dying_after_a_job_is_retried_then_hands_back(
    queue: SqlQueue, graph_file: str
) -> None:
    """ComfyUI answered (a job succeeded), then died: the next job is tried in place 1 + 2 times,
    then handed back with its attempt refunded — a crashed ComfyUI is not the job's fault."""
    runner = CountingRunner(MemoryOutputs())
    pool = WorkerPool(queue, runner, runner.store, config=fast_config(retries=2))  # type: ignore[arg-type]
    fc = await FakeComfy().start()
    first = queue.enqueue(graph_file, {"n": 1})
    pool.start_cluster(ClusterRuntime("c", [fc.url]))
    await until("first job done", lambda: queue.get(first.id).status is JobStatus.SUCCEEDED)
    await fc.aclose()
    second = queue.enqueue(graph_file, {"n": 2}, max_attempts=1)
    await until("job handed back", lambda: "ComfyUI failed" in (queue.get(second.id).detail or ""))
    await pool.shutdown(0.0)
    got = queue.get(second.id)
    assert got.status is JobStatus.QUEUED and got.attempts == 0
    assert runner.calls.count(second.id) == 3


async def test_named_workflow_is_bound_and_run(queue: SqlQueue) -> None:
    """A named workflow (flux_schnell) is bound from the job's params and runs on FakeComfy."""
    store = MemoryOutputs()
    pool = pool_for(queue, store)
    async with FakeComfy() as fc:
        job = queue.enqueue("flux_schnell", {"prompt": "a lighthouse at dusk", "steps": 2})
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    assert "a lighthouse at dusk" in json.dumps(fc.prompts[-1])
    assert queue.get(job.id).outputs and all(k in store.objects for k in queue.get(job.id).outputs)


async def test_unknown_workflow_fails_at_once(queue: SqlQueue) -> None:
    """An unknown workflow name fails without retry, naming the workflow."""
    pool = pool_for(queue, MemoryOutputs())
    async with FakeComfy() as fc:
        job = queue.enqueue("no_such_workflow", {})
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job failure", lambda: queue.get(job.id).status is JobStatus.FAILED)
        await pool.shutdown(0.0)
    got = queue.get(job.id)
    assert got.attempts == 1 and "no_such_workflow" in (got.error or "")
