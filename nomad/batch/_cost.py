"""A slot's true cost: its run, plus its share of the wake (cold start and idle tail).

The worker records a job's run time at the cluster's price plus its share of
the cold start when it waited for the wake. What it cannot see is the idle
tail: after the last job the GPU stays up ``idle_minutes`` before it goes
down, and for a daily job that tail is most of the bill (a slot recorded
23 % of what the GPU billed for its wake). Until the cluster ledger records
every cluster's launch and teardown, the tail is estimated from the price
and ``idle_minutes`` the autoscaler publishes, split between the jobs that
ran in the same wake; the manifest says which basis it used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nomad.queue.base import Job


@dataclass(frozen=True)
class WakeInfo:
    """What is known of the wake a job ran in."""

    price_per_hour: float
    idle_seconds: float
    jobs_in_wake: int  # jobs that ran on that cluster in this wake (>= 1)
    basis: str


def true_cost(job: Job, wake: WakeInfo | None) -> dict[str, Any]:
    """The job's cost with its share of the idle tail; pure (tests pass a WakeInfo)."""
    run = float(job.cost or 0.0)
    if wake is None:
        return {"run_usd": round(run, 6), "idle_tail_usd": None, "total_usd": round(run, 6),
                "basis": "run only: no cluster price known"}  # fmt: skip
    tail = wake.price_per_hour * wake.idle_seconds / 3600.0 / max(1, wake.jobs_in_wake)
    return {
        "run_usd": round(run, 6),
        "idle_tail_usd": round(tail, 6),
        "total_usd": round(run + tail, 6),
        "jobs_in_wake": wake.jobs_in_wake,
        "basis": wake.basis,
    }


def wake_of(job: Job, status: dict[str, Any] | None, neighbours: list[Job]) -> WakeInfo | None:
    """Estimate the wake from the autoscaler's published status and the jobs around ``job``.

    ``neighbours``: recent finished jobs; those on the same cluster whose run
    overlaps this wake (finished after the cluster was ready for ``job``) share
    its tail.
    """
    if not status or job.cluster is None:
        return None
    price = None
    for c in status.get("clusters") or []:
        if c.get("name") == job.cluster and c.get("price_per_hour") is not None:
            price = float(c["price_per_hour"])
    if price is None:
        return None
    idle = float(status.get("idle_minutes") or 0.0) * 60.0
    ready = job.times.get("cluster_ready_at") or job.times.get("started_at") or 0.0
    same = {
        j.id
        for j in neighbours
        if j.cluster == job.cluster and j.times.get("finished_at", 0.0) >= ready
    } | {job.id}
    return WakeInfo(
        price,
        idle,
        len(same),
        "estimate: idle_minutes x cluster price, split between the jobs of the wake "
        "(the cluster ledger will give the billed figure)",
    )
