"""A slot's true cost: every try's run, plus the slot's share of the wake (cold start, idle tail).

The worker records a job's run time at the cluster's price plus its share of
the cold start when it waited for the wake. Two things it cannot see: tries
a filter rejected (they were paid for too) and the idle tail — after the last
job the GPU stays up ``idle_minutes`` before it goes down, and for a daily job
that tail is most of the bill (a slot recorded 23 % of what the GPU billed
for its wake). So a slot's cost is:

- **estimate** (written into the manifest when the outputs are stored, while
  the cluster is still up): the tries' recorded costs plus ``idle_minutes`` x
  the cluster's price, split by the number of jobs in the wake;
- **billed** (``nomad jobs show`` once the wake is over): the cluster ledger's
  row for that wake (launch to confirmed teardown, as billed in started
  minutes), split between the jobs that ran in it by run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from nomad.queue.base import Job


@dataclass(frozen=True)
class WakeInfo:
    """What is known of the wake a slot ran in (for the estimate)."""

    price_per_hour: float
    idle_seconds: float
    jobs_in_wake: int  # jobs that ran on that cluster in this wake (>= 1)
    slot_jobs_in_wake: int  # of which this slot's tries
    basis: str


class WakeRow(Protocol):
    """The slice of a cluster ledger row the billed figure needs."""

    id: str
    name: str
    started_at: float
    ended_at: float | None
    closed_at: float | None

    def cost(self, since: float, until: float) -> float: ...


def estimate(tries: list[Job], wake: WakeInfo | None) -> dict[str, Any]:
    """The slot's estimated cost (pure): tries' recorded costs + its share of the idle tail."""
    run = sum(float(j.cost or 0.0) for j in tries)
    out: dict[str, Any] = {"run_usd": round(run, 6), "tries": len(tries)}
    if wake is None:
        return {**out, "idle_tail_usd": None, "total_usd": round(run, 6),
                "basis": "runs only: no cluster price known"}  # fmt: skip
    share = wake.slot_jobs_in_wake / max(1, wake.jobs_in_wake)
    tail = wake.price_per_hour * wake.idle_seconds / 3600.0 * share
    return {
        **out,
        "idle_tail_usd": round(tail, 6),
        "total_usd": round(run + tail, 6),
        "jobs_in_wake": wake.jobs_in_wake,
        "basis": wake.basis,
    }


def estimate_wake(
    tries: list[Job], status: dict[str, Any] | None, neighbours: Iterable[Job]
) -> WakeInfo | None:
    """The wake of the slot's last try, from the autoscaler's published status and recent jobs."""
    if not tries or not status or tries[-1].cluster is None:
        return None
    last = tries[-1]
    price = None
    for c in status.get("clusters") or []:
        if c.get("name") == last.cluster and c.get("price_per_hour") is not None:
            price = float(c["price_per_hour"])
    if price is None:
        return None
    idle = float(status.get("idle_minutes") or 0.0) * 60.0
    ready = min(
        (j.times.get("cluster_ready_at") or j.times.get("started_at") or 0.0) for j in tries
    )
    ids = {j.id for j in tries}
    wake = {
        j.id
        for j in neighbours
        if j.cluster == last.cluster and j.times.get("finished_at", 0.0) >= ready
    } | ids
    return WakeInfo(
        price,
        idle,
        len(wake),
        len(ids & wake),
        "estimate: the tries' run costs + idle_minutes x cluster price split between the "
        "jobs of the wake (`nomad jobs show` gives the billed figure once the wake is over)",
    )


def billed(tries: list[Job], row: WakeRow, wake_jobs: Iterable[Job], now: float) -> dict[str, Any]:
    """The slot's share of what the ledger says its wake cost, by run time (pure)."""
    end = row.ended_at if row.ended_at is not None else now
    total = row.cost(row.started_at, end)
    weights = {j.id: _run_seconds(j) for j in wake_jobs}
    for j in tries:
        weights.setdefault(j.id, _run_seconds(j))
    mine = sum(weights[j.id] for j in tries)
    share = total * mine / max(1e-9, sum(weights.values()))
    final = row.closed_at is not None
    return {
        "run_usd": round(sum(float(j.cost or 0.0) for j in tries), 6),
        "tries": len(tries),
        "wake_usd": round(total, 6),
        "jobs_in_wake": len(weights),
        "total_usd": round(share, 6),
        "basis": (
            f"billed: cluster ledger row {row.id} ({row.name}, {end - row.started_at:.0f} s up, "
            f"cold start and idle tail included), split by run time"
            if final
            else f"so far: cluster {row.name} is still up (ledger row {row.id})"
        ),
    }


def _run_seconds(job: Job) -> float:
    start, end = job.times.get("started_at"), job.times.get("finished_at")
    return max(1.0, (end - start)) if start is not None and end is not None else 1.0


def wake_row(rows: Iterable[WakeRow], job: Job, now: float) -> WakeRow | None:
    """The ledger row of the wake ``job`` ran in (same cluster name, run inside its life)."""
    started = job.times.get("started_at")
    if job.cluster is None or started is None:
        return None
    for row in rows:
        end = row.ended_at if row.ended_at is not None else now
        if row.name == job.cluster and row.started_at <= started <= end:
            return row
    return None


def ledger_cost(
    queue: Any, project: str, tries: list[Job], *, clock: Callable[[], float]
) -> dict[str, Any] | None:
    """The billed figure from the cluster ledger in the queue's database, or None without a row."""
    if not tries:
        return None
    try:
        from nomad.queue._sql import SqlQueue
        from nomad.queue.ledger import ClusterLedger
    except ImportError:  # pragma: no cover - an older queue without the ledger
        return None
    if not isinstance(queue, SqlQueue):
        return None
    now = clock()
    first = min(j.times.get("started_at", now) for j in tries)
    rows = ClusterLedger(queue, project, clock=clock).rows_since(first - 86400.0)
    row = wake_row(rows, tries[-1], now)
    if row is None:
        return None
    end = row.ended_at if row.ended_at is not None else now
    wake_jobs = [
        j
        for j in queue.list(limit=1000)
        if j.cluster == row.name and row.started_at <= j.times.get("started_at", -1.0) <= end
    ]
    return billed(tries, row, wake_jobs, now)
