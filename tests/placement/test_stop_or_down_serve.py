"""Stop vs down for idle clusters: the idle-gap estimate by hand, the rule's inputs, and the autoscaler carrying it out.

Real: the autoscaler loop and policy, the SQLite queue and cluster ledger. Double: FakeBackend
(SupportsStop; launches nothing).

Hand figures: 40 GB at $0.09/GB-month kept 12 h = 40 x 0.09 x 0.5/30 = $0.0600. Re-pulling for
300 s on a $0.40/h GPU = $0.0333 (down); valuing users' wait at $5/h makes it 5.40 x 300/3600 =
$0.4500 (stop).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.base import ClusterState, LaunchSpec, Offer
from nomad.config.load import load_text
from nomad.errors import BackendError
from nomad.placement import IdleRule, expected_idle_gap
from nomad.queue import open_queue
from nomad.queue._sql import SqlQueue
from nomad.queue.ledger import ClusterLedger
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.policy import Policy, PolicyConfig
from nomad.testing.backend import FakeBackend

T0 = 20_000 * 86400.0 + 3600
OFFER = Offer("fake", "loopback", "fake-1x", "RTX4090", 1, 0.40, False, 24.0)
HOUR = 3600.0


def test_idle_gap_is_the_mean_of_the_gaps_longer_than_the_idle_timeout() -> None:
    """Arrivals 0, 100, 4000, 4100, 40000 with a 600 s timeout: cold gaps 3300 and 35300 s, mean 19300 s."""
    gap, why = expected_idle_gap([40000, 0, 4000, 100, 4100], 600, default_seconds=HOUR)
    assert gap == 19300 and "2 idle gap(s) in 5" in why
    gap, why = expected_idle_gap([0, 100, 200], 600, default_seconds=HOUR)
    assert gap == HOUR and "assumed 1 h" in why


def _rule(**kw: Any) -> IdleRule:
    base: dict[str, Any] = {
        "storage_usd_per_gb_month": 0.09,
        "default_gap_seconds": 12 * HOUR,
        "idle_seconds": 600.0,
    }
    return IdleRule(**(base | kw))


def _decide(rule: IdleRule, **kw: Any) -> Any:
    base: dict[str, Any] = {
        "can_stop": True,
        "disk_gb": 40,
        "price_per_hour": 0.40,
        "arrivals": [],
        "recorded_cold_start_s": 300.0,
    }
    return rule.decide(**(base | kw))


def test_the_rule_weighs_recorded_cold_starts_and_the_configured_gap() -> None:
    """$0.0600 kept vs $0.0333 re-pull: down; with users' wait at $5/h ($0.45): stop; the reason names every input."""
    down = _decide(_rule())
    assert down.action == "down" and down.keep_cost == pytest.approx(0.06)
    assert down.repull_cost == pytest.approx(0.40 * 300 / HOUR)
    stop = _decide(_rule(wait_usd_per_hour=5.0))
    assert stop.action == "stop" and stop.repull_cost == pytest.approx(0.45)
    assert "assumed 12 h" in stop.reason and "median recorded cold start" in stop.reason


def test_the_rule_never_stops_what_cannot_stop_and_obeys_config() -> None:
    """A backend that cannot stop: down; on_idle forces either; no cold start on record: down (nothing to weigh)."""
    assert _decide(_rule(wait_usd_per_hour=5.0), can_stop=False).action == "down"
    assert _decide(_rule(on_idle="stop")).action == "stop"
    assert _decide(_rule(on_idle="down", wait_usd_per_hour=5.0)).action == "down"
    none = _decide(_rule(wait_usd_per_hour=5.0), recorded_cold_start_s=None)
    assert none.action == "down" and "no cold start recorded" in none.reason
    conf = _decide(_rule(wait_usd_per_hour=5.0, repull_seconds=300.0), recorded_cold_start_s=None)
    assert conf.action == "stop" and "configured" in conf.reason


def test_rule_from_config() -> None:
    """infra.on_idle and infra.stopped_disk become the rule (hours to seconds, idle minutes to seconds)."""
    cfg = load_text(
        "infra:\n  on_idle: stop\n  idle_minutes: 5\n"
        "  stopped_disk: {usd_per_gb_month: 0.08, idle_gap_hours: 2, wait_usd_per_hour: 1.5}\n"
    )
    assert IdleRule.from_config(cfg) == IdleRule("stop", 0.08, 7200.0, 1.5, None, 300.0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Pool:
    def start_cluster(self, rt: Any) -> None:
        pass

    async def stop_cluster(self, name: str) -> None:
        pass


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path: Path, clock: Clock) -> Iterator[SqlQueue]:
    q = open_queue(None, tmp_path, clock=clock)
    assert isinstance(q, SqlQueue)
    yield q
    q.close()


async def _idle_out(
    queue: SqlQueue, clock: Clock, backend: FakeBackend, rule: IdleRule
) -> tuple[Autoscaler, ClusterLedger]:
    """Adopt an UP cluster at $0.40/h with a 300 s cold start on record, then tick past idle + drain."""
    book = ClusterLedger(queue, "demo", clock=clock)
    row = book.intend("demo-serve", "fake", "autoscaler", OFFER)
    backend.launch(LaunchSpec(cluster_name="demo-serve", image_ref=""), OFFER)
    book.mark_up(row.id, backend.endpoints, 0.40)
    spec = LaunchSpec(cluster_name="demo-serve", image_ref="", disk_gb=40)
    ops = BackendOps(
        backend, spec, None, health_timeout_s=None, clock=clock, ledger=book,
        sleep=lambda _s: None, idle_rule=rule,
    )  # fmt: skip
    policy = Policy(PolicyConfig(idle_seconds=60.0, drain_seconds=5.0, base_name="demo-serve"))
    policy.eta.add_cold_start(300.0)
    scaler = Autoscaler(queue, ops, policy, Pool(), clock=clock, status_every=10.0, ledger=book)
    await scaler.load()
    for _ in range(12):
        clock.now += 10
        await scaler.step()
    return scaler, book


async def test_autoscaler_stops_an_idle_cluster_when_the_re_pull_costs_more(
    queue: SqlQueue, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Users' wait at $5/h: the idle cluster is stopped (disk kept), its ledger row closed with the decision, and an event says why."""
    fake = FakeBackend(price_per_hour=0.40, clock=clock)
    with caplog.at_level(logging.INFO):
        _, book = await _idle_out(queue, clock, fake, _rule(wait_usd_per_hour=5.0))
    assert ("stop", "demo-serve") in fake.calls and ("teardown", "demo-serve") not in fake.calls
    assert fake.clusters["demo-serve"].state is ClusterState.STOPPED
    assert book.open_rows() == []
    row = book.last("demo-serve")
    assert row is not None and (row.detail or "").startswith("idle: stopped, disk kept: keeping 40 GB")
    assert any("cluster.idle_decision" in r.message and "action=stop" in r.message for r in caplog.records)


async def test_autoscaler_tears_down_when_keeping_the_disk_costs_more(
    queue: SqlQueue, clock: Clock
) -> None:
    """No value on waiting: $0.06 kept > $0.033 re-pull, so the cluster is torn down; the ledger says why."""
    fake = FakeBackend(price_per_hour=0.40, clock=clock)
    _, book = await _idle_out(queue, clock, fake, _rule())
    assert ("teardown", "demo-serve") in fake.calls and ("stop", "demo-serve") not in fake.calls
    assert fake.clusters == {} and book.open_rows() == []
    row = book.last("demo-serve")
    assert row is not None and "re-pull $0.0333" in (row.detail or "")


async def test_a_stop_that_fails_falls_back_to_a_confirmed_teardown(
    queue: SqlQueue, clock: Clock
) -> None:
    """A cloud that cannot stop (the stop raises): the cluster is torn down instead and the ledger says the stop failed."""

    class NoStop(FakeBackend):
        def stop(self, cluster_name: str) -> None:
            raise BackendError("RunPod clusters cannot be stopped")

    fake = NoStop(price_per_hour=0.40, clock=clock)
    _, book = await _idle_out(queue, clock, fake, _rule(on_idle="stop"))
    assert fake.clusters == {} and book.open_rows() == []
    row = book.last("demo-serve")
    assert row is not None and "stop failed (RunPod clusters cannot be stopped)" in (row.detail or "")


def test_recent_arrivals_come_from_the_queue(queue: SqlQueue, clock: Clock, tmp_path: Path) -> None:
    """The autoscaler reads arrival times of recent jobs (their queued_at) for the idle-gap estimate."""
    for dt in (0, 100, 4000):
        clock.now = T0 + dt
        queue.enqueue("flux_schnell", {})
    ops = BackendOps(FakeBackend(), LaunchSpec(cluster_name="x", image_ref=""), None)
    scaler = Autoscaler(queue, ops, Policy(PolicyConfig()), Pool(), clock=clock)
    assert sorted(scaler._arrivals()) == [T0, T0 + 100, T0 + 4000]


async def test_the_next_wake_restarts_the_stopped_cluster_on_its_own_offer(
    queue: SqlQueue, clock: Clock
) -> None:
    """After an idle stop on the $0.40 offer, a cheaper offer has appeared; the wake still goes to the stopped cluster's offer (its disk)."""
    cheaper = Offer("fake", "other", "fake-1x", "RTX4090", 1, 0.30, False, 24.0)
    fake = FakeBackend(price_per_hour=0.40, clock=clock, offers=[cheaper, OFFER])
    scaler, book = await _idle_out(queue, clock, fake, _rule(on_idle="stop"))
    assert fake.clusters["demo-serve"].state is ClusterState.STOPPED
    launched = scaler.ops.up("demo-serve")  # type: ignore[attr-defined]
    assert launched.info.offer == OFFER
    row = book.find_open("demo-serve")
    assert row is not None and row.offer == OFFER
