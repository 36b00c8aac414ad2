""" "Why did that take so long?": a job's timestamps turned into named phases.

Each phase is the time between two stamps that exist on the job; missing
stamps (a job that never waited for a wake has no cluster stamps) simply
drop their phase. A job that arrived while a wake was already under way is
only charged from its own arrival. Model load is its own phase: ComfyUI loads
weights inside execution (loader nodes, the sampler's first step), measured
from its per-node events (``nomad.comfy._phases``).
"""

from __future__ import annotations

from nomad.queue.base import Job

# (label, from stamp, to stamp), in the order a job lives through them.
PHASE_TABLE: tuple[tuple[str, str, str], ...] = (
    ("queue wait (before wake)", "queued_at", "cluster_requested_at"),
    ("provision", "cluster_requested_at", "cluster_provisioned_at"),
    ("image pull + start", "cluster_provisioned_at", "cluster_ready_at"),
    ("queue wait", "cluster_ready_at", "started_at"),
    ("input upload", "started_at", "uploaded_at"),
    ("ComfyUI queue", "uploaded_at", "executing_at"),
    ("model load", "executing_at", "loaded_at"),
    ("inference", "loaded_at", "executed_at"),
    ("download + output upload", "executed_at", "finished_at"),
)


def phase_timings(job: Job) -> list[tuple[str, float]]:
    """(label, seconds) for every phase whose stamps exist, clipped to the job's own lifetime."""
    t = job.times
    queued = t.get("queued_at")
    woke = "cluster_ready_at" in t
    out: list[tuple[str, float]] = []
    for label, a, b in PHASE_TABLE:
        if label == "queue wait" and not woke:
            a = "queued_at"  # no wake: all of the wait is queue wait
        if label == "inference" and "loaded_at" not in t:
            a = "executing_at"  # a job recorded before model load was measured
        if a not in t or b not in t:
            continue
        start = max(t[a], queued) if queued is not None else t[a]
        out.append((label, max(0.0, t[b] - start)))
    return out


def total_seconds(job: Job) -> float | None:
    """Queued → finished (None while unfinished)."""
    t = job.times
    if "queued_at" in t and "finished_at" in t:
        return max(0.0, t["finished_at"] - t["queued_at"])
    return None
