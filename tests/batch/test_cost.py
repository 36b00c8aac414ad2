"""A slot's true cost: every try plus its share of the wake (estimate, then billed from the ledger)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from nomad import batch
from nomad.config.schema import BatchJob
from nomad.queue import open_queue
from nomad.queue.base import Job

SLOT = dt.datetime(2026, 11, 23, 7, 0, tzinfo=dt.UTC)
JOB = BatchJob(name="wallpaper", schedule="0 7 * * *", workflow="flux_schnell")


class Clock:
    """A settable clock shared by the queue and the ledger."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_estimate_counts_rejected_tries_and_the_idle_tail() -> None:
    """Two tries ($0.01 + $0.02) and a 10-minute tail at $3.60/h, both jobs of the wake ⇒ $0.63."""
    tries = [Job("a", "w", cost=0.01), Job("b", "w", cost=0.02)]
    wake = batch.WakeInfo(3.6, 600.0, jobs_in_wake=2, slot_jobs_in_wake=2, basis="estimate")
    cost = batch.estimate(tries, wake)
    assert cost["run_usd"] == 0.03 and cost["idle_tail_usd"] == 0.6 and cost["total_usd"] == 0.63
    shared = batch.estimate(tries[1:], batch.WakeInfo(3.6, 600.0, 3, 1, "estimate"))
    assert shared["idle_tail_usd"] == 0.2  # a third of the tail when three jobs shared the wake


def test_estimate_without_a_price_says_so() -> None:
    """No known cluster price: the runs only, and the basis says it."""
    cost = batch.estimate([Job("a", "w", cost=0.01)], None)
    assert cost["total_usd"] == 0.01 and cost["idle_tail_usd"] is None
    assert cost["basis"].startswith("runs only")


def test_billed_cost_from_the_cluster_ledger(queue_url: str, tmp_path: Path) -> None:
    """A daily slot on a closed ledger row is charged the whole wake (cold start + run + idle tail)."""
    from nomad.queue.ledger import ClusterLedger

    clock = Clock(1_800_000_000.0)
    queue = open_queue(queue_url, tmp_path, clock=clock)
    try:
        ledger = ClusterLedger(queue, "p", clock=clock)  # type: ignore[arg-type]
        row = ledger.intend("p-serve", "local", "autoscaler", None, price_per_hour=3.6)
        fired = batch.fire(queue, JOB, SLOT).job
        clock.now += 60  # cold start
        ledger.mark_up(row.id, ["http://127.0.0.1:1"])
        leased = queue.lease("w", cluster="p-serve")
        assert leased is not None and leased.id == fired.id
        clock.now += 10  # the run
        queue.complete(fired.id, leased.lease_token or "", outputs=["outputs/x/0.png"], cost=0.01)
        queue.put_state(batch.COLLECTED_SCOPE, fired.id, {"status": "stored", "keys": ["k.png"]})
        open_view = batch.job_view(queue, queue.get(fired.id), project="p", clock=clock)
        assert open_view is not None and open_view["cost"]["basis"].startswith("so far")
        clock.now += 600  # idle tail, then teardown confirmed
        ledger.confirm_gone(row.id)
        view = batch.job_view(queue, queue.get(fired.id), project="p", clock=clock)
        assert view is not None
        cost: dict[str, Any] = view["cost"]
        assert cost["basis"].startswith("billed: cluster ledger row")
        assert cost["wake_usd"] == pytest.approx(
            3.6 * 12 / 60
        )  # 670 s billed as 12 started minutes
        assert cost["total_usd"] == cost["wake_usd"]  # the only job of its wake
        assert cost["run_usd"] == 0.01  # what the worker recorded: 1.4 % of the bill
    finally:
        queue.close()
