"""Attempts belong to the job: storage, queue and ComfyUI trouble never spend one (workers, real queue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.local.process import free_port, spawn, stop_process
from nomad.errors import QueueError, StorageError
from nomad.queue import JobStatus
from nomad.queue._sql import SqlQueue
from nomad.serve.runner import ComfyRunner, failure_kind
from nomad.serve.worker import ClusterRuntime, WorkerPool
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually
from tests.serve.test_worker import GRAPH, MemoryOutputs, fast_config, until


@pytest.fixture
def queue(tmp_path: Path) -> SqlQueue:
    from nomad.queue import open_queue

    q = open_queue(None, tmp_path, lease_seconds=30)
    assert isinstance(q, SqlQueue)
    return q


@pytest.fixture
def graph_file(tmp_path: Path) -> str:
    path = tmp_path / "g.json"
    path.write_text(json.dumps(GRAPH))
    return str(path)


class FlakyOutputs(MemoryOutputs):
    """An OutputStore double whose ``down`` switch makes every call raise StorageError."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refused = 0

    def _check(self) -> None:
        if self.down:
            self.refused += 1
            raise StorageError("cannot reach s3://bucket: connection refused")

    def put(self, key: str, data: bytes) -> str:
        self._check()
        return super().put(key, data)

    def get(self, key: str) -> bytes:
        self._check()
        return super().get(key)


def test_failure_kinds() -> None:
    """Only the job's own faults are 'job'; storage/queue are 'infra'; a ComfyUI that vanished is 'endpoint'."""
    from nomad.errors import (
        ComfyConnectionError,
        ComfyError,
        ComfyExecutionError,
        ComfyValidationError,
        PrivacyError,
        WorkflowError,
    )

    assert failure_kind(WorkflowError("bad")) == "job"
    assert failure_kind(ComfyValidationError("400")) == "job"
    assert failure_kind(ComfyExecutionError("node raised")) == "job"
    assert failure_kind(StorageError("s3 down")) == "infra"
    assert failure_kind(QueueError("db down")) == "infra"
    assert failure_kind(ComfyConnectionError("gone")) == "endpoint"
    assert failure_kind(ComfyError("HTTP 500")) == "endpoint"
    assert failure_kind(TimeoutError()) == "endpoint"
    assert failure_kind(PrivacyError("the SOCKS proxy did not answer")) == "endpoint"
    assert failure_kind(KeyError("bug")) == "job"  # a bug must not loop a job forever


async def test_storage_down_while_storing_outputs_waits_and_runs_once(
    queue: SqlQueue, graph_file: str
) -> None:
    """S3 down when outputs are stored: the worker keeps its lease and retries the upload only;
    ComfyUI runs the graph once, the job succeeds on its first attempt."""
    store = FlakyOutputs()
    store.down = True
    pool = WorkerPool(queue, ComfyRunner(store), store, config=fast_config())
    async with FakeComfy() as fc:
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("uploads refused a few times", lambda: store.refused >= 3)
        assert queue.get(job.id).status is JobStatus.RUNNING
        store.down = False
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    done = queue.get(job.id)
    assert done.attempts == 1 and len(fc.prompts) == 1 and done.outputs[0] in store.objects


async def test_storage_down_while_fetching_inputs_waits(queue: SqlQueue, tmp_path: Path) -> None:
    """S3 down when a job's input is fetched: the job waits under its lease, then runs; no attempt lost."""
    from nomad.testing.comfy import png_bytes

    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    path = tmp_path / "load.json"
    path.write_text(json.dumps(graph))
    store = FlakyOutputs()
    store.objects["inputs/in.png"] = png_bytes(b"in")
    store.down = True
    pool = WorkerPool(queue, ComfyRunner(store), store, config=fast_config())
    async with FakeComfy() as fc:
        job = queue.enqueue(str(path), {}, inputs={"in.png": "inputs/in.png"}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("fetches refused a few times", lambda: store.refused >= 3)
        store.down = False
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    assert queue.get(job.id).attempts == 1 and len(fc.prompts) == 1


async def test_storage_down_too_long_hands_the_job_back(
    queue: SqlQueue, graph_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past infra_wait_seconds the job is handed back (attempt refunded) with the reason; it never
    fails, however often that happens."""
    reasons: list[str] = []
    real = queue.release

    def recording(job_id: str, token: str, reason: str = "") -> bool:
        reasons.append(reason)
        return real(job_id, token, reason)

    monkeypatch.setattr(queue, "release", recording)
    store = FlakyOutputs()
    store.down = True
    pool = WorkerPool(queue, ComfyRunner(store), store, config=fast_config(infra_wait_seconds=0.2))
    async with FakeComfy() as fc:
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job handed back twice", lambda: len(reasons) >= 2)
        await pool.shutdown(0.0)
    assert "connection refused" in reasons[0] and "waited" in reasons[0]
    got = queue.get(job.id)
    assert got.status is JobStatus.QUEUED and got.attempts == 0


async def test_queue_down_when_recording_the_result_is_retried(
    queue: SqlQueue, graph_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue refusing ``complete`` twice: the worker retries and the job succeeds exactly once."""
    real = queue.complete
    refusals = [2]

    def flaky(*a: Any, **kw: Any) -> bool:
        if refusals[0]:
            refusals[0] -= 1
            raise QueueError("database unreachable")
        return real(*a, **kw)

    monkeypatch.setattr(queue, "complete", flaky)
    store = MemoryOutputs()
    pool = pool_with(queue, store)
    async with FakeComfy() as fc:
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    assert refusals == [0] and queue.get(job.id).attempts == 1 and len(fc.prompts) == 1


async def test_stopping_a_cluster_cancels_its_runs(queue: SqlQueue, graph_file: str) -> None:
    """stop_cluster mid-run: the run stops at once, ComfyUI is interrupted, the job goes back
    (attempt refunded) and then runs on the next cluster — the old endpoint sees nothing more."""
    store = MemoryOutputs()
    pool = pool_with(queue, store)
    async with FakeComfy(hold_at_step=1, hold_timeout=30) as old, FakeComfy() as new:
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("old", [old.url]))
        await until("job running", lambda: (queue.get(job.id).progress or 0) > 0)
        await pool.stop_cluster("old")
        assert pool.busy == 0 and old.interrupts
        back = queue.get(job.id)
        assert back.status is JobStatus.QUEUED and back.attempts == 0
        assert "cluster was stopped" in (back.detail or "")
        pool.start_cluster(ClusterRuntime("new", [new.url]))
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    assert len(old.prompts) == 1 and len(new.prompts) == 1 and queue.get(job.id).cluster == "new"


def pool_with(queue: SqlQueue, store: MemoryOutputs) -> WorkerPool:
    return WorkerPool(queue, ComfyRunner(store), store, config=fast_config())


@pytest.fixture
def comfy_port() -> int:
    return free_port()


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url + "/system_stats", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _start_fake(port: int, *, delay: float, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "nomad.testing.comfy", "--port", str(port)]
    return spawn([*argv, "--delay", str(delay)], log_path=log)


async def test_comfy_process_crash_mid_job_costs_no_attempt(
    queue: SqlQueue, graph_file: str, comfy_port: int, tmp_path: Path
) -> None:
    """SIGKILL the ComfyUI process (FakeComfy as a real process) mid-sampling; a new one comes up on
    the same port: the job succeeds with max_attempts=1 — the crash did not spend its only attempt."""
    slow = _start_fake(comfy_port, delay=1.0, log=tmp_path / "slow.log")
    url = f"http://127.0.0.1:{comfy_port}"
    fresh: subprocess.Popen[bytes] | None = None
    try:
        eventually(lambda: _answers(url), timeout=30, what="FakeComfy up")
        store = MemoryOutputs()
        pool = pool_with(queue, store)
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [url]))
        await until("job sampling", lambda: (queue.get(job.id).progress or 0) > 0)
        os.kill(slow.pid, signal.SIGKILL)
        slow.wait()
        await until("job handed back", lambda: "ComfyUI failed" in (queue.get(job.id).detail or ""))
        assert queue.get(job.id).attempts == 0
        fresh = _start_fake(comfy_port, delay=0.0, log=tmp_path / "fresh.log")
        await until(
            "job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED, timeout=60
        )
        await pool.shutdown(1.0)
        assert queue.get(job.id).attempts == 1
    finally:
        stop_process(slow)
        if fresh is not None:
            stop_process(fresh)


async def test_queue_unreachable_when_leasing_backs_off_and_recovers(
    queue: SqlQueue, graph_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue refusing ``lease`` a few times: workers back off and then take the job; nothing is
    charged for the refusals."""
    real = queue.lease
    refusals = [3]

    def flaky(*a: Any, **kw: Any) -> Any:
        if refusals[0]:
            refusals[0] -= 1
            raise QueueError("could not connect to the database")
        return real(*a, **kw)

    monkeypatch.setattr(queue, "lease", flaky)
    store = MemoryOutputs()
    pool = pool_with(queue, store)
    async with FakeComfy() as fc:
        job = queue.enqueue(graph_file, {}, max_attempts=1)
        pool.start_cluster(ClusterRuntime("c", [fc.url]))
        await until("job success", lambda: queue.get(job.id).status is JobStatus.SUCCEEDED)
        await pool.shutdown(1.0)
    assert refusals == [0] and queue.get(job.id).attempts == 1
