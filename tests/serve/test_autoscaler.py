"""The autoscaler loop with FakeBackend (a launch double), the real SQLite queue and an injected clock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nomad.backends.base import ClusterState, LaunchSpec
from nomad.errors import NoCapacityError
from nomad.queue import JobStatus, open_queue
from nomad.queue._sql import SqlQueue
from nomad.serve.autoscaler import Autoscaler, BackendOps, Launched
from nomad.serve.policy import Policy, PolicyConfig
from nomad.serve.worker import ClusterRuntime
from nomad.testing.backend import FakeBackend

T0 = 1_699_920_000.0 + 3600


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class GatedOps(BackendOps):
    """BackendOps whose launch blocks until the test opens the gate: a waking period without sleeping."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.gate = threading.Event()

    def up(self, name: str) -> Launched:
        assert self.gate.wait(timeout=30), "test never opened the launch gate"
        return super().up(name)


class PoolRecorder:
    """Stands in for the worker pool: records which clusters got workers."""

    def __init__(self) -> None:
        self.started: list[ClusterRuntime] = []
        self.stopped: list[str] = []

    def start_cluster(self, rt: ClusterRuntime) -> None:
        self.started.append(rt)

    async def stop_cluster(self, name: str) -> None:
        self.stopped.append(name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path: Path, clock: Clock) -> SqlQueue:
    q = open_queue(None, tmp_path, clock=clock)
    assert isinstance(q, SqlQueue)
    return q


def make(
    queue: SqlQueue, clock: Clock, backend: FakeBackend, *, gated: bool = False, **cfg: object
) -> tuple[Autoscaler, PoolRecorder]:
    pool = PoolRecorder()
    ops = (GatedOps if gated else BackendOps)(
        backend,
        LaunchSpec(cluster_name="x", image_ref=""),
        None,
        health_timeout_s=None,
        clock=clock,
    )
    policy = Policy(
        PolicyConfig(**({"idle_seconds": 60.0, "drain_seconds": 5.0, "base_name": "gpu"} | cfg))
    )  # type: ignore[arg-type]
    return Autoscaler(queue, ops, policy, pool, clock=clock, status_every=10.0), pool


def launches(backend: FakeBackend) -> list[str]:
    return [name for method, name in backend.calls if method == "launch"]


async def test_burst_on_cold_cluster_launches_once_and_jobs_wait(
    queue: SqlQueue, clock: Clock
) -> None:
    """Ten jobs on a cold cluster ⇒ one launch; they are marked waking, then released to workers."""
    backend = FakeBackend(price_per_hour=2.0, gpu="L4")
    scaler, pool = make(queue, clock, backend, gated=True)
    jobs = [queue.enqueue("w", {}) for _ in range(10)]
    await scaler.step()
    for _ in range(5):  # still waking: more ticks, more jobs, no second launch
        clock.now += 5
        queue.enqueue("w", {})
        await scaler.step()
    assert queue.get(jobs[0].id).status is JobStatus.WAKING
    assert queue.get(jobs[0].id).times["cluster_requested_at"] == T0
    assert (await scaler.publish())["state"] == "waking"
    assert queue.lease("nobody", cluster="none") is not None  # jobs stay leasable while waking
    clock.now = T0 + 30
    scaler.ops.gate.set()  # type: ignore[attr-defined]
    await scaler.settle()
    for _ in range(3):
        await scaler.step()
    assert launches(backend) == ["gpu"]
    assert [rt.name for rt in pool.started] == ["gpu"] and pool.started[0].gpu == "L4"
    job = queue.get(jobs[-1].id)
    assert job.status is JobStatus.QUEUED and job.times["cluster_ready_at"] == T0 + 30
    doc = await scaler.publish()
    assert doc["state"] == "ready" and doc["cold_start_median_s"] == 30.0
    assert queue.get_state("autoscaler", "status") == doc


async def test_idle_cluster_is_torn_down_after_idle_period(queue: SqlQueue, clock: Clock) -> None:
    """After the work is done and idle_seconds + drain pass, the backend gets exactly one teardown."""
    backend = FakeBackend()
    scaler, _ = make(queue, clock, backend)
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    leased = queue.lease("gpu#0", cluster="gpu")
    assert leased is not None and leased.lease_token
    queue.complete(job.id, leased.lease_token, outputs=[])
    for dt in (1, 30, 61, 62, 66, 70):
        clock.now = T0 + dt
        await scaler.step()
    assert [c for c in backend.calls if c[0] == "teardown"] == [("teardown", "gpu")]
    assert (await scaler.publish())["state"] == "cold"


async def test_failed_cluster_requeues_running_jobs_and_relaunches(
    queue: SqlQueue, clock: Clock
) -> None:
    """A cluster reported FAILED: its running job goes back to the queue and a new cluster is launched."""
    backend = FakeBackend()
    scaler, pool = make(queue, clock, backend)
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    assert queue.lease("gpu#0", cluster="gpu") is not None
    backend.set_state("gpu", ClusterState.FAILED, "the node died")
    clock.now += 11  # next cluster status check
    await scaler.step()
    requeued = queue.get(job.id)
    assert requeued.status is JobStatus.WAKING and requeued.attempts == 0  # back, waiting for gpu-2
    assert "gpu" in pool.stopped and ("teardown", "gpu") in backend.calls
    await scaler.settle()
    assert launches(backend) == ["gpu", "gpu-2"]


async def test_budget_cap_blocks_launch_with_detail(queue: SqlQueue, clock: Clock) -> None:
    """Daily budget already spent ⇒ no launch at all, and the waiting job says why."""
    backend = FakeBackend()
    scaler, _ = make(queue, clock, backend, daily_budget=5.0)
    queue.put_state("autoscaler", "history", {"spent": {str(int(T0 // 86400)): 5.0}})
    await scaler.load()
    job = queue.enqueue("w", {})
    await scaler.step()
    assert launches(backend) == []
    got = queue.get(job.id)
    assert got.status is JobStatus.QUEUED and "daily budget $5.00 reached" in (got.detail or "")
    assert (await scaler.publish())["detail"] == got.detail


async def test_launch_failure_is_reported_and_retried_after_backoff(
    queue: SqlQueue, clock: Clock
) -> None:
    """A launch error (no capacity) lands in the jobs' detail; after the backoff a new launch succeeds."""
    backend = FakeBackend()
    backend.script_launches([NoCapacityError("no RTX4090 anywhere"), None])
    scaler, pool = make(queue, clock, backend, backoff_seconds=20.0)
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    clock.now += 1
    await scaler.step()
    assert "no RTX4090 anywhere" in (queue.get(job.id).detail or "")
    clock.now += 20
    await scaler.step()
    await scaler.settle()
    assert len(launches(backend)) == 2 and len(pool.started) == 1


async def test_restart_keeps_learned_cold_start(queue: SqlQueue, clock: Clock) -> None:
    """Cold starts learned by one autoscaler feed the next one's ETA (persisted in the queue)."""
    from nomad.serve.eta import EtaModel

    scaler, _ = make(queue, clock, FakeBackend(), gated=True)
    queue.enqueue("w", {})
    await scaler.step()
    clock.now += 42
    scaler.ops.gate.set()  # type: ignore[attr-defined]
    await scaler.settle()
    await scaler.publish()
    eta = EtaModel.from_json(queue.get_state("autoscaler", "history"))
    assert eta.cold_start() == 42.0


async def test_cluster_left_up_is_adopted_and_idles_down(queue: SqlQueue, clock: Clock) -> None:
    """A cluster still up from an earlier serve gets workers at start and is torn down when idle."""
    backend = FakeBackend()
    backend.launch(LaunchSpec(cluster_name="gpu", image_ref=""))
    scaler, pool = make(queue, clock, backend)
    await scaler.load()
    assert [rt.name for rt in pool.started] == ["gpu"]
    for dt in (1, 61, 62, 67):
        clock.now = T0 + dt
        await scaler.step()
    assert launches(backend) == ["gpu"] and ("teardown", "gpu") in backend.calls


def test_backend_ops_never_launches_above_the_price_cap(tmp_path: Path) -> None:
    """The autoscaler's launch plans first: an offer above max_price_per_hour is refused, not launched."""
    from nomad.backends.base import Offer
    from nomad.errors import NomadError

    pricey = Offer("fake", "r", "big", "H100", 1, 9.0, False)
    backend = FakeBackend(offers=[pricey], price_per_hour=9.0)
    spec = LaunchSpec(cluster_name="x", image_ref="", max_price_per_hour=2.0)
    ops = BackendOps(backend, spec, tmp_path, health_timeout_s=None)
    with pytest.raises(NomadError):
        ops.up("gpu")
    assert launches(backend) == []


def test_backend_ops_launches_the_cheapest_offer_and_records_its_price(tmp_path: Path) -> None:
    """The launched cluster carries the chosen offer's $/hour, so daily spend is counted."""
    from nomad.backends.base import Offer

    cheap = Offer("fake", "r", "small", "L4", 1, 0.5, False)
    backend = FakeBackend(offers=[cheap, Offer("fake", "r", "big", "H100", 1, 3.0, False)])
    spec = LaunchSpec(cluster_name="x", image_ref="", max_price_per_hour=2.0)
    done = BackendOps(backend, spec, tmp_path, health_timeout_s=None).up("gpu")
    assert done.info.offer == cheap and done.info.price_per_hour == 0.5
    backend.script_launches([NoCapacityError("no L4 left")])  # sold out: the next offer
    mid = Offer("fake", "r", "mid", "L40S", 1, 1.5, False)
    backend.offers = [cheap, mid]
    again_up = BackendOps(backend, spec, tmp_path, health_timeout_s=None).up("gpu2")
    assert again_up.info.offer == mid and again_up.info.price_per_hour == 1.5
    backend.clusters["gpu"].price_per_hour = 0.0  # providers (SkyPilot) report no price
    again = BackendOps(backend, spec, tmp_path, health_timeout_s=None).status("gpu")
    assert again.price_per_hour == 0.5  # filled from nomad's record for adoption
