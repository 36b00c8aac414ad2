"""How serve keeps paid GPUs accounted for: ledger adoption, one serve per project, clocks,
dead endpoints, the ledger's budget, admin holds. Each test is named after the way it used to leak.

Real: the autoscaler loop, the policy, the SQLite queue/ledger, the watchdog's IdlePolicy,
`nomad serve` processes (way 3). Doubles: FakeBackend (launches nothing), FakeComfy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.base import ClusterState, LaunchSpec, Offer
from nomad.config.schema import InfraConfig
from nomad.queue import JobStatus, open_queue
from nomad.queue._sql import SqlQueue
from nomad.queue.lease import LeaderLease, LeaseHeld
from nomad.queue.ledger import ClusterLedger, LedgerState, me
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.policy import Phase, Policy, PolicyConfig, View, drain_seconds
from nomad.testing.backend import FakeBackend
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually
from nomad.watchdog import IdlePolicy, Observation, node_window_minutes

T0 = 20_000 * 86400.0 + 3600  # 01:00 UTC
OFFER = Offer("fake", "loopback", "fake-1x", "RTX4090", 1, 1.0, False, 24.0)
NOMAD = [str(Path(sys.executable).with_name("nomad"))]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Pool:
    """Stands in for the worker pool: records clusters it was given and told to stop."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.stopped: list[str] = []

    def start_cluster(self, rt: Any) -> None:
        self.started.append(rt.name)

    async def stop_cluster(self, name: str) -> None:
        self.stopped.append(name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path: Path, clock: Clock) -> Iterator[SqlQueue]:
    q = open_queue(None, tmp_path, clock=clock)
    assert isinstance(q, SqlQueue)
    yield q
    q.close()


@pytest.fixture
def book(queue: SqlQueue, clock: Clock) -> ClusterLedger:
    return ClusterLedger(queue, "demo", clock=clock)


def scaler_for(
    queue: SqlQueue,
    book: ClusterLedger,
    clock: Clock,
    backend: FakeBackend,
    *,
    health: float | None = None,
    **cfg: Any,
) -> tuple[Autoscaler, Pool]:
    ops = BackendOps(
        backend, LaunchSpec(cluster_name="x", image_ref=""), None,
        health_timeout_s=health, clock=clock, ledger=book, sleep=lambda _s: None,
    )  # fmt: skip
    knobs = {"idle_seconds": 60.0, "drain_seconds": 5.0, "base_name": "demo-serve"} | cfg
    pool = Pool()
    scaler = Autoscaler(
        queue, ops, Policy(PolicyConfig(**knobs)), pool, clock=clock, status_every=10.0, ledger=book
    )
    return scaler, pool


def dead_pid() -> int:
    """The pid of a process that has exited (an earlier serve that was SIGKILLed)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


async def idle_down(scaler: Autoscaler, clock: Clock, seconds: float = 120.0) -> None:
    """Tick past the idle window and the drain with nothing to do."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 10
        await scaler.step()


# -- way 2: adoption from the ledger, not by name --------------------------------------------


async def test_way2_restarted_serve_adopts_serve_2_from_the_ledger_and_tears_down_the_rest(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """A SIGKILLed serve left -serve (gone), -serve-2 (up) and -serve-3 (never came up): adopt, close, tear down."""
    ghost = f"{me().split(':')[0]}:{dead_pid()}"
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    rows = {n: book.intend(n, "fake", "autoscaler", OFFER, owner=ghost) for n in
            ("demo-serve", "demo-serve-2", "demo-serve-3")}  # fmt: skip
    fake.launch(LaunchSpec(cluster_name="demo-serve-2", image_ref=""), OFFER)
    book.mark_up(rows["demo-serve-2"].id, fake.endpoints)
    fake.set_state("demo-serve-3", ClusterState.PROVISIONING)
    scaler, pool = scaler_for(queue, book, clock, fake)
    await scaler.load()
    assert set(scaler.policy.clusters) == {"demo-serve-2"} and pool.started == ["demo-serve-2"]
    assert set(fake.clusters) == {"demo-serve-2"}
    (kept,) = book.open_rows()
    assert kept.name == "demo-serve-2" and kept.owner == me()
    assert "gone before serve started" in (book.get(rows["demo-serve"].id).detail or "")  # type: ignore[union-attr]
    await idle_down(scaler, clock)
    assert fake.clusters == {} and book.open_rows() == []


async def test_way2_more_up_clusters_than_wanted_are_torn_down(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """max_clusters=1 and two clusters up in the ledger: one adopted, the other torn down and closed."""
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    for name in ("demo-serve", "demo-serve-2"):
        row = book.intend(name, "fake", "autoscaler", OFFER, owner=f"elsewhere:{dead_pid()}")
        fake.launch(LaunchSpec(cluster_name=name, image_ref=""), OFFER)
        book.mark_up(row.id, fake.endpoints)
    clock.now += 3600  # long after that serve went silent
    scaler, _ = scaler_for(queue, book, clock, fake)
    await scaler.load()
    assert set(fake.clusters) == {"demo-serve"} and [r.name for r in book.open_rows()] == [
        "demo-serve"
    ]


async def test_way2_a_launch_in_flight_elsewhere_is_left_alone_and_its_name_not_reused(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """A `nomad up` launching right now in another live process keeps its row; serve picks another name."""
    host = me().split(":")[0]
    book.intend("demo-serve", "fake", "up", OFFER, owner=f"{host}:{os.getppid()}")  # alive
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    scaler, _ = scaler_for(queue, book, clock, fake)
    queue.enqueue("w", {})
    await scaler.load()
    await scaler.step()
    await scaler.settle()
    assert [n for m, n in fake.calls if m == "launch"] == ["demo-serve-2"]
    assert book.find_open("demo-serve") is not None


# -- way 3: one serve per project ----------------------------------------------------------


async def test_way3_second_serve_refuses_before_starting_anything(
    queue: SqlQueue, tmp_path: Path
) -> None:
    """serve() with the project's lease held elsewhere raises LeaseHeld naming host, pid and since."""
    from nomad.config.schema import NomadConfig
    from nomad.serve.server import serve

    first = LeaderLease(queue, "demo")
    first.acquire()
    cfg = NomadConfig.model_validate({"project": "demo"})
    fake = FakeBackend()
    with pytest.raises(LeaseHeld, match=rf"pid {os.getpid()}, since"):
        await serve(cfg, tmp_path, queue=queue, backend=fake, store=object())  # type: ignore[arg-type]
    assert fake.calls == [] and first.renew()


def test_way3_two_serve_processes_on_one_project_the_second_refuses_then_standby_takes_over(
    tmp_path: Path, stack: Any
) -> None:
    """Real processes: serve #2 exits 1 naming #1 (host, pid, since); --standby waits and takes over on SIGTERM."""
    from tests.serve.test_serve_node_side import FAKE_COMFY, _project, _serve

    env = _project(tmp_path, stack, FAKE_COMFY, {"idle_minutes": 5})
    q = open_queue(None, tmp_path / "data")
    assert isinstance(q, SqlQueue)
    lease = LeaderLease(q, "node")

    def holder_pid() -> int | None:
        held = lease.current()
        return held.pid if held else None

    first = _serve(env, tmp_path / "first.log")
    standby: subprocess.Popen[bytes] | None = None
    try:
        eventually(lambda: holder_pid() == first.pid, timeout=60, what="serve #1 holding the lease")
        second = subprocess.run(
            [*NOMAD, "serve"], env=env, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1, second.stderr
        assert f"pid {first.pid}" in second.stderr and "since" in second.stderr
        assert "--standby" in second.stderr and first.poll() is None
        log = tmp_path / "standby.log"
        with log.open("ab") as out:
            standby = subprocess.Popen([*NOMAD, "serve", "--standby", "--interval", "0.2"],
                                       env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        eventually(lambda: "serve.standby" in log.read_text(), timeout=60, what="standby waiting")
        assert holder_pid() == first.pid
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0
        eventually(
            lambda: holder_pid() == standby.pid, timeout=60, what="standby holding the lease"
        )  # type: ignore[union-attr]
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(60) == 0
        assert lease.current() is None  # released on a clean exit
    finally:
        for proc in (first, standby):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        q.close()


# -- way 4: idle clocks that cannot race -----------------------------------------------------


@pytest.mark.parametrize("idle_minutes", [0.25, 1.0, 10.0, 60.0])
def test_way4_node_window_is_strictly_longer_than_serves_idle_and_drain(
    idle_minutes: float,
) -> None:
    """For any idle setting the node's switch waits longer than serve's idle + drain (by the margin)."""
    infra = InfraConfig(idle_minutes=idle_minutes)
    node = node_window_minutes(infra.idle_minutes, infra.node_idle_margin_minutes) * 60.0
    serve_window = idle_minutes * 60.0 + drain_seconds(idle_minutes * 60.0)
    assert node > serve_window


def test_way4_a_margin_shorter_than_the_drain_is_refused() -> None:
    """infra.node_idle_margin_minutes at or under the drain is a config error that says why."""
    with pytest.raises(ValueError, match="longer than serve's drain"):
        InfraConfig(idle_minutes=10, node_idle_margin_minutes=0.5)


def test_way4_watchdog_and_autoscaler_on_one_clock_never_send_a_job_to_a_stopped_node() -> None:
    """The issue's race replayed (watchdog at 615 s, job at 640 s): for every arrival time, while serve would
    dispatch, the node's switch has not fired."""
    infra = InfraConfig(idle_minutes=10)
    window = node_window_minutes(infra.idle_minutes, infra.node_idle_margin_minutes) * 60.0
    for arrival in range(0, 1200, 5):
        policy = Policy(PolicyConfig.from_infra(infra, "demo"))
        policy.tick(View(waiting=1), 0.0)
        policy.on_launched("demo-serve", 0.0, price_per_hour=1.0, gpu="L4", endpoints=1, waiting=1)
        switch = IdlePolicy(idle_seconds=window, started_at=0.0)  # the last prompt ended at 0 s
        fired_at = None
        for t in range(0, arrival + 1):
            if fired_at is None and switch.observe(float(t), {"u": Observation(busy=False)}):
                fired_at = t
            policy.tick(View(waiting=1 if t == arrival else 0), float(t))
        dispatchable = any(
            c.phase in (Phase.READY, Phase.DRAINING) for c in policy.clusters.values()
        )
        if dispatchable:  # serve would send the job to this node: it must still be running
            assert fired_at is None, f"job at {arrival}s sent to a node stopped at {fired_at}s"


async def test_way4_a_dead_endpoint_is_a_lost_cluster_at_once(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """The backend still says UP but ComfyUI stopped answering: requeue and tear down at the next check."""
    comfy = FakeComfy.start_in_thread()
    fake = FakeBackend(endpoints=[comfy.url], price_per_hour=1.0, clock=clock)
    scaler, pool = scaler_for(queue, book, clock, fake, health=5.0)
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    assert pool.started == ["demo-serve"]
    leased = queue.lease("w1", cluster="demo-serve")
    assert leased is not None and leased.id == job.id
    comfy.stop()  # ComfyUI dies; the provider still reports the node UP
    clock.now += 10
    await scaler.step()
    assert "demo-serve" in pool.stopped and "demo-serve" not in fake.clusters
    assert queue.get(job.id).status in (JobStatus.QUEUED, JobStatus.WAKING)
    assert "stopped answering" in (book.last("demo-serve").detail or "")  # type: ignore[union-attr]
    await scaler.settle()  # the job still waits: a new wake, whose ComfyUI (dead) never answers
    assert fake.clusters == {} and book.open_rows() == []
    assert "launch failed" in (book.last("demo-serve-2").detail or "")  # type: ignore[union-attr]


# -- way 7: the budget reads the ledger ------------------------------------------------------


async def test_way7_autoscaler_budget_counts_clusters_it_did_not_launch(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """A `nomad up` cluster spent $1 today and is gone: serve with a $1 daily budget does not launch."""
    row = book.intend("nomad-demo", "fake", "up", OFFER)
    clock.now += 3600
    book.confirm_gone(row.id, "down")
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    scaler, _ = scaler_for(queue, book, clock, fake, daily_budget=1.0)
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    assert [c for c in fake.calls if c[0] == "launch"] == []
    assert "daily budget $1.00 reached ($1.00 spent today)" in (queue.get(job.id).detail or "")
    assert (await scaler.publish())["spend_today"] == 1.0


# -- way 8: the admin's /down and /up reach serve ---------------------------------------------


async def test_way8_admin_hold_blocks_launches_and_a_wake_request_launches_without_jobs(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """A hold (from /down) keeps jobs waiting with its reason; /up clears it and asks for a GPU now."""
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    scaler, _ = scaler_for(queue, book, clock, fake)
    await scaler.load()
    queue.put_state("autoscaler", "admin", {"hold": "an admin stopped the GPU (/down)"})
    job = queue.enqueue("w", {})
    await scaler.step()
    assert [c for c in fake.calls if c[0] == "launch"] == []
    assert "an admin stopped the GPU" in (queue.get(job.id).detail or "")
    queue.cancel(job.id)
    queue.put_state("autoscaler", "admin", {"hold": None, "wake_at": clock.now})
    await scaler.step()
    await scaler.settle()
    assert [n for m, n in fake.calls if m == "launch"] == ["demo-serve"]
    (row,) = book.open_rows()
    assert row.state is LedgerState.UP and row.requested_by == "autoscaler"
    await idle_down(scaler, clock)
    assert fake.clusters == {} and book.open_rows() == []


async def test_way7_a_cluster_serve_does_not_run_is_closed_once_its_backend_forgets_it(
    queue: SqlQueue, book: ClusterLedger, clock: Clock
) -> None:
    """A `nomad up` cluster next to serve: when its node's switch removed it, serve closes its row (spend stops)."""
    fake = FakeBackend(price_per_hour=1.0, clock=clock)
    scaler, _ = scaler_for(queue, book, clock, fake)
    await scaler.load()
    row = book.intend("nomad-demo", "fake", "up", OFFER, owner=f"elsewhere:{dead_pid()}")
    fake.launch(LaunchSpec(cluster_name="nomad-demo", image_ref=""), OFFER)
    book.mark_up(row.id, fake.endpoints)
    clock.now += 3600
    await idle_down(scaler, clock, 20)
    assert book.find_open("nomad-demo") is not None  # still up: serve leaves it alone
    fake.teardown("nomad-demo")  # the node's switch + autostop took it down
    await idle_down(scaler, clock, 20)
    assert book.open_rows() == []
    spent = book.spend_today()
    clock.now += 3600  # closed: an hour later nothing more accrues, nothing is forgotten
    assert spent == book.spend_today() == pytest.approx(61 / 60)  # 3630 s, in started minutes
