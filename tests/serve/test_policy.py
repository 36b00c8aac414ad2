"""The autoscaler's rules, driven by an injected clock: nothing sleeps, nothing launches."""

from __future__ import annotations

from nomad.serve.eta import EtaModel
from nomad.serve.policy import Annotate, Down, Phase, Policy, PolicyConfig, Requeue, Up, View

T0 = 1_699_920_000.0 + 3600  # 01:00 UTC, so tests stay inside one day


def policy(**kw: object) -> Policy:
    cfg = {"idle_seconds": 60.0, "drain_seconds": 10.0, "base_name": "c"} | kw
    return Policy(PolicyConfig(**cfg))  # type: ignore[arg-type]


def ups(actions: list[object]) -> list[Up]:
    return [a for a in actions if isinstance(a, Up)]


def test_first_jobs_on_cold_cluster_make_one_up() -> None:
    """Many waiting jobs on a cold cluster ⇒ exactly one Up, and none on later ticks while waking."""
    p = policy()
    first = p.tick(View(waiting=5), T0)
    assert ups(first) == [Up("c")]
    for i in range(1, 20):
        assert ups(p.tick(View(waiting=5 + i), T0 + i)) == []
    assert p.phase() is Phase.WAKING


def test_jobs_wait_through_waking_then_are_released_when_ready() -> None:
    """While waking, waiting jobs are marked waking with the request time; ready moves them back."""
    p = policy()
    p.eta.add_cold_start(120.0)
    acts = p.tick(View(waiting=2), T0)
    notes = [a for a in acts if isinstance(a, Annotate)]
    assert notes == [Annotate("waking", "waking a GPU (~120 s)", {"cluster_requested_at": T0})]
    ready = p.on_launched("c", T0 + 90, price_per_hour=2.0, gpu="L4", endpoints=1, waiting=2)
    assert ready == Annotate("queued", None, {"cluster_ready_at": T0 + 90})
    assert p.phase() is Phase.READY
    assert p.eta.cold_starts == [120.0, 90.0]
    assert p.clusters["c"].cold_share == 2.0 * 90 / 3600 / 2


def test_idle_period_then_drain_then_down() -> None:
    """No work for idle_seconds ⇒ draining; after the drain grace ⇒ one Down and cold."""
    p = policy()
    p.tick(View(waiting=1), T0)
    p.on_launched("c", T0 + 10, price_per_hour=1.0, gpu="L4", endpoints=1, waiting=1)
    p.tick(View(waiting=0, running={"c": 1}), T0 + 20)
    assert p.tick(View(waiting=0), T0 + 30) == []  # idle clock starts
    assert p.tick(View(waiting=0), T0 + 89) == []
    assert p.tick(View(waiting=0), T0 + 90) == []
    assert p.clusters["c"].phase is Phase.DRAINING
    assert p.tick(View(waiting=0), T0 + 99) == []
    assert p.tick(View(waiting=0), T0 + 100) == [Down("c")]
    assert p.phase() is Phase.COLD and p.clusters == {}


def test_running_jobs_keep_the_cluster_up() -> None:
    """A running job (no waiting ones) resets the idle clock."""
    p = policy()
    p.tick(View(waiting=1), T0)
    p.on_launched("c", T0, price_per_hour=1.0, gpu=None, endpoints=1, waiting=1)
    for t in range(0, 600, 30):
        assert p.tick(View(waiting=0, running={"c": 1}), T0 + t) == []
    assert p.clusters["c"].phase is Phase.READY


def test_job_arriving_while_draining_cancels_teardown() -> None:
    """Work during draining puts the cluster back to ready: no Down, no new Up."""
    p = policy()
    p.tick(View(waiting=1), T0)
    p.on_launched("c", T0, price_per_hour=1.0, gpu=None, endpoints=1, waiting=1)
    p.tick(View(waiting=0), T0 + 1)
    p.tick(View(waiting=0), T0 + 61)
    assert p.clusters["c"].phase is Phase.DRAINING
    acts = p.tick(View(waiting=1), T0 + 65)
    assert not [a for a in acts if isinstance(a, Down | Up)]
    assert p.clusters["c"].phase is Phase.READY
    assert not [a for a in p.tick(View(waiting=0), T0 + 80) if isinstance(a, Down)]


def test_scale_out_when_backlog_exceeds_threshold_up_to_max() -> None:
    """Backlog per cluster above the threshold adds clusters, never beyond max_clusters."""
    p = policy(max_clusters=2, backlog_per_cluster=4)
    assert ups(p.tick(View(waiting=4), T0)) == [Up("c")]
    assert ups(p.tick(View(waiting=4), T0 + 1)) == []  # 4 per cluster is not above 4
    assert ups(p.tick(View(waiting=9), T0 + 2)) == [Up("c-2")]
    assert ups(p.tick(View(waiting=100), T0 + 3)) == []
    assert len(p.clusters) == 2


def test_daily_budget_blocks_launch_with_clear_detail() -> None:
    """Spend at the daily budget ⇒ no Up, and waiting jobs get a detail naming the budget."""
    p = policy(daily_budget=1.0)
    p.spent[str(int(T0 // 86400))] = 1.0
    acts = p.tick(View(waiting=3), T0)
    assert ups(acts) == []
    note = next(a for a in acts if isinstance(a, Annotate))
    assert note.status == "queued" and note.detail is not None
    assert "daily budget $1.00 reached" in note.detail and "00:00 UTC" in note.detail


def test_budget_counts_a_minimum_wake() -> None:
    """A wake that would cost more than the budget left (price * idle period) is not started."""
    p = policy(daily_budget=1.0, idle_seconds=3600.0)
    p.price_hint = 2.0
    assert ups(p.tick(View(waiting=1), T0)) == []
    assert p.blocked is not None and "daily budget" in p.blocked


def test_price_cap_blocks_launch() -> None:
    """A known price above max $/hour ⇒ no Up and a detail naming both prices."""
    p = policy(max_price_per_hour=1.0)
    p.price_hint = 3.5
    acts = p.tick(View(waiting=1), T0)
    assert ups(acts) == []
    assert p.blocked == (
        "waiting: the cheapest GPU costs $3.50/h, above infra.max_price_per_hour $1.00/h"
    )


def test_spend_today_counts_live_and_closed_clusters() -> None:
    """Spend = closed clusters today + running clusters since their request."""
    p = policy()
    p.tick(View(waiting=1), T0)
    p.on_launched("c", T0 + 360, price_per_hour=10.0, gpu=None, endpoints=1, waiting=1)
    assert round(p.spend_today(T0 + 360), 6) == 1.0
    p.on_lost("c", T0 + 720, "preempted")
    assert round(p.spend_today(T0 + 5000), 6) == 2.0


def test_failed_cluster_requeues_and_relaunches() -> None:
    """A lost cluster ⇒ Requeue of its jobs, a Down to clean up, then a fresh Up next tick."""
    p = policy()
    p.tick(View(waiting=1), T0)
    p.on_launched("c", T0, price_per_hour=1.0, gpu=None, endpoints=1, waiting=1)
    acts = p.on_lost("c", T0 + 5, "spot capacity reclaimed")
    assert isinstance(acts[0], Requeue) and acts[0].name == "c" and "reclaimed" in acts[0].reason
    assert acts[1] == Down("c", "lost")
    assert ups(p.tick(View(waiting=1), T0 + 6)) == [Up("c-2")]


def test_launch_failure_backs_off_then_retries() -> None:
    """A failed launch is retried after a growing backoff, with the error in the jobs' detail."""
    p = policy(backoff_seconds=30.0)
    p.tick(View(waiting=1), T0)
    p.on_launch_failed("c", T0 + 1, "no capacity")
    acts = p.tick(View(waiting=1), T0 + 2)
    assert ups(acts) == [] and p.blocked is not None and "no capacity" in p.blocked
    assert len(ups(p.tick(View(waiting=1), T0 + 31))) == 1
    p.on_launch_failed("c-2", T0 + 32, "no capacity")
    assert ups(p.tick(View(waiting=1), T0 + 62)) == []  # second backoff is 60 s
    assert len(ups(p.tick(View(waiting=1), T0 + 92))) == 1


def test_eta_model_medians_and_wait() -> None:
    """ETA uses the median cold start and the median run time per workflow and GPU."""
    eta = EtaModel()
    for s in (100.0, 300.0, 110.0):
        eta.add_cold_start(s)
    eta.add_run("flux", "L4", 10.0)
    eta.add_run("flux", "L4", 30.0)
    eta.add_run("flux", "H100", 2.0)
    assert eta.cold_start() == 110.0 and eta.cold_start_left(100.0) == 10.0
    assert eta.run_time("flux", "L4") == 20.0 and eta.run_time("flux", "A10") == 10.0
    assert eta.wait(position=3, workers=2, workflow="flux", gpu="L4", cold_left=10.0) == 50.0
    assert EtaModel.from_json(eta.to_json()) == eta
