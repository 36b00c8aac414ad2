"""Which GPU a wake for batch work may use: spot allowed, price cap — a pure function.

Batch jobs may declare ``spot: true`` and their own ``max_price_per_hour``.
Jobs due in the same window are enqueued together when it opens, so they
share one wake; that wake may use spot only when every waiting job allows it
and its price cap is the lowest cap among them and ``infra``'s. When
interactive jobs wait too, the wake is theirs on ``infra``'s terms (no spot
they did not ask for, no batch cap slowing them down): a batch job riding an
up cluster adds only its run time. Preemption
is already handled by the autoscaler (a lost cluster's running jobs are
requeued without spending their attempts); this function is what an
autoscaler asks before launching.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nomad.queue.base import Job


@dataclass(frozen=True)
class WakeRequest:
    """What the next launch may use."""

    spot: bool
    max_price_per_hour: float | None
    reason: str


def wake_request(
    waiting: Iterable[Job], *, infra_spot: bool, infra_max_price: float | None
) -> WakeRequest:
    """Spot and price cap for a wake serving ``waiting`` jobs."""
    jobs = list(waiting)
    if not jobs:
        return WakeRequest(infra_spot, infra_max_price, "no waiting jobs: infra defaults")
    batch = [j for j in jobs if j.front_door == "batch"]
    if len(batch) < len(jobs):  # people are waiting: their wake, infra's terms; batch rides along
        return WakeRequest(
            infra_spot, infra_max_price, "interactive jobs waiting: infra's spot and price cap"
        )
    all_spot = len(batch) == len(jobs) and all(j.meta.get("spot") for j in batch)
    caps = [float(j.meta["max_price_per_hour"]) for j in batch if j.meta.get("max_price_per_hour")]
    if infra_max_price is not None:
        caps.append(infra_max_price)
    cap = min(caps) if caps else None
    spot = infra_spot or all_spot
    if all_spot:
        why = f"all {len(batch)} waiting batch job(s) allow spot"
    else:
        why = "a waiting batch job does not allow spot"
    return WakeRequest(spot, cap, why)
