"""What the autoscaler does around one wake: warm-up before workers, the wake's spot/price terms.

Real: the autoscaler loop, the policy, BackendOps, the SQLite queue and cluster ledger, the
WorkerPool with ComfyRunner, ``nomad.node.warmup.warm_up``. Doubles: FakeBackend (launches
nothing, hands out the FakeComfy's URL), FakeComfy (the ComfyUI protocol double).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.base import ClusterInfo, LaunchSpec, Offer
from nomad.config import load_text
from nomad.config.schema import NomadConfig
from nomad.node.phases import read_jsonl
from nomad.queue import JobStatus, open_queue
from nomad.queue._sql import SqlQueue
from nomad.queue.ledger import ClusterLedger
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.outputs import MemoryOutputs
from nomad.serve.policy import Policy, PolicyConfig
from nomad.serve.runner import ComfyRunner
from nomad.serve.worker import PoolConfig, WorkerPool
from nomad.testing.backend import FakeBackend
from nomad.testing.comfy import FakeComfy
from tests.serve.test_worker import GRAPH, until

WARMUP = """
project: demo
node:
  warmup:
    workflow: flux_schnell
    params: {seed: 3, steps: 1}
    timeout_s: 60
"""


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqlQueue]:
    q = open_queue(None, tmp_path)
    assert isinstance(q, SqlQueue)
    yield q
    q.close()


def serve_parts(
    queue: SqlQueue,
    backend: FakeBackend,
    data_dir: Path,
    *,
    warmup: NomadConfig | None = None,
    spec: LaunchSpec | None = None,
) -> tuple[Autoscaler, WorkerPool]:
    """The autoscaler and a real worker pool wired as ``nomad serve`` wires them."""
    book = ClusterLedger(queue, "demo")
    ops = BackendOps(
        backend, spec or LaunchSpec(cluster_name="x", image_ref=""), data_dir,
        health_timeout_s=10.0, ledger=book, sleep=lambda _s: None, warmup=warmup,
    )  # fmt: skip
    store = MemoryOutputs()
    pool = WorkerPool(
        queue, ComfyRunner(store), store, config=PoolConfig(lease_seconds=30, idle_poll_seconds=0.1)
    )
    policy = Policy(PolicyConfig(idle_seconds=600.0, drain_seconds=5.0, base_name="demo-serve"))
    return Autoscaler(queue, ops, policy, pool, ledger=book), pool


async def run_one_job(queue: SqlQueue, scaler: Autoscaler, pool: WorkerPool, graph: Path) -> str:
    """Enqueue one job, let the autoscaler wake a cluster and the pool run it to the end."""
    job = queue.enqueue(str(graph), {})
    await scaler.step()
    await scaler.settle()
    try:
        await until("the job finished", lambda: queue.get(job.id).status.finished, timeout=60)
    finally:
        await pool.shutdown(5.0)
    return job.id


def sampler(graph: dict[str, Any]) -> dict[str, Any]:
    """The KSampler inputs of a graph ComfyUI received."""
    (node,) = [n for n in graph.values() if n["class_type"] == "KSampler"]
    return dict(node["inputs"])


async def test_warmup_prompt_reaches_comfyui_before_the_first_real_job(
    queue: SqlQueue, tmp_path: Path
) -> None:
    """node.warmup set: the wake runs flux_schnell (1 step) on the new ComfyUI, then the job; a phase is recorded."""
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(GRAPH))
    comfy = FakeComfy.start_in_thread()
    try:
        fake = FakeBackend(endpoints=[comfy.url])
        scaler, pool = serve_parts(queue, fake, tmp_path, warmup=load_text(WARMUP))
        job_id = await run_one_job(queue, scaler, pool, graph)
        assert queue.get(job_id).status is JobStatus.SUCCEEDED
        assert len(comfy.prompts) == 2
        assert (sampler(comfy.prompts[0])["seed"], sampler(comfy.prompts[0])["steps"]) == (3, 1)
        assert sampler(comfy.prompts[1])["seed"] == GRAPH["5"]["inputs"]["seed"]
    finally:
        comfy.stop()
    (ev,) = read_jsonl(tmp_path / "cold_start.jsonl")
    assert (ev["phase"], ev["ok"], ev["cluster"], ev["workflow"]) == (
        "warmup", True, "demo-serve", "flux_schnell"
    )  # fmt: skip
    assert list(ev["endpoints"]) == [comfy.url]


async def test_failed_warmup_never_fails_the_wake(queue: SqlQueue, tmp_path: Path) -> None:
    """The warm-up prompt fails on ComfyUI: recorded ok=false, the cluster still serves the job."""
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(GRAPH))
    comfy = FakeComfy.start_in_thread(fail_at_node="38")  # flux_schnell's UNETLoader; not in GRAPH
    try:
        fake = FakeBackend(endpoints=[comfy.url])
        scaler, pool = serve_parts(queue, fake, tmp_path, warmup=load_text(WARMUP))
        job_id = await run_one_job(queue, scaler, pool, graph)
        assert queue.get(job_id).status is JobStatus.SUCCEEDED
        assert len(comfy.prompts) == 2
    finally:
        comfy.stop()
    (ev,) = read_jsonl(tmp_path / "cold_start.jsonl")
    assert (ev["phase"], ev["ok"]) == ("warmup", False)
    assert isinstance(ev["endpoints"][comfy.url], str)  # the error, not seconds


async def test_no_warmup_configured_sends_only_the_job(queue: SqlQueue, tmp_path: Path) -> None:
    """Without node.warmup the first prompt ComfyUI sees is the job's, and no phase is written."""
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(GRAPH))
    comfy = FakeComfy.start_in_thread()
    try:
        scaler, pool = serve_parts(queue, FakeBackend(endpoints=[comfy.url]), tmp_path)
        await run_one_job(queue, scaler, pool, graph)
        assert len(comfy.prompts) == 1
    finally:
        comfy.stop()
    assert not (tmp_path / "cold_start.jsonl").exists()


# -- batch: spot and price cap per wake (issue 16 item 7) ---------------------------------------

INFRA_TERMS = LaunchSpec(cluster_name="x", image_ref="", spot=False, max_price_per_hour=2.0)


class SpecRecorder(FakeBackend):
    """FakeBackend that keeps the LaunchSpec of every launch call."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.specs: list[LaunchSpec] = []

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        self.specs.append(spec)
        return super().launch(spec, offer)


class Pool:
    """Stands in for the worker pool (these tests look at the launch, not at jobs running)."""

    def start_cluster(self, rt: Any) -> None:
        pass

    async def stop_cluster(self, name: str) -> None:
        pass


async def wake_for(queue: SqlQueue, backend: SpecRecorder) -> LaunchSpec:
    """One autoscaler step with the queue as it is: the spec the wake launched with."""
    book = ClusterLedger(queue, "demo")
    ops = BackendOps(
        backend, INFRA_TERMS, None, health_timeout_s=None, ledger=book, sleep=lambda _s: None,
        queue=queue,
    )  # fmt: skip
    policy = Policy(PolicyConfig(idle_seconds=600.0, drain_seconds=5.0, base_name="demo-serve"))
    scaler = Autoscaler(queue, ops, policy, Pool(), ledger=book)
    await scaler.step()
    await scaler.settle()
    (spec,) = backend.specs
    return spec


def batch_job(queue: SqlQueue, spot: bool, cap: float | None) -> None:
    queue.enqueue("w", {}, front_door="batch", meta={"spot": spot, "max_price_per_hour": cap})


async def test_only_batch_jobs_allowing_spot_wake_on_spot_at_the_lowest_cap(
    queue: SqlQueue,
) -> None:
    """Two batch jobs allow spot (caps $0.8 and $0.5), infra says on-demand ≤ $2: spot, ≤ $0.5."""
    batch_job(queue, True, 0.8)
    batch_job(queue, True, 0.5)
    fake = SpecRecorder(price_per_hour=0.3)
    spec = await wake_for(queue, fake)
    assert (spec.spot, spec.max_price_per_hour) == (True, 0.5)
    assert fake.clusters["demo-serve"].offer.spot  # type: ignore[union-attr]


async def test_an_interactive_job_waiting_keeps_infras_terms(queue: SqlQueue) -> None:
    """A bot job waits beside the spot-allowing batch job: the wake is on-demand at infra's $2 cap."""
    batch_job(queue, True, 0.5)
    queue.enqueue("w", {}, front_door="bot")
    spec = await wake_for(queue, SpecRecorder(price_per_hour=0.3))
    assert (spec.spot, spec.max_price_per_hour) == (False, 2.0)


async def test_a_batch_job_not_allowing_spot_keeps_on_demand_but_its_cap(queue: SqlQueue) -> None:
    """Batch only, one refuses spot: on-demand, still at the lowest batch cap."""
    batch_job(queue, True, 0.5)
    batch_job(queue, False, 0.9)
    spec = await wake_for(queue, SpecRecorder(price_per_hour=0.3))
    assert (spec.spot, spec.max_price_per_hour) == (False, 0.5)
