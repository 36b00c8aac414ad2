"""What ``nomad batch list/show`` and ``nomad jobs show`` say about batch runs.

Read-only: built from the queue's job rows and the batch state documents,
so every front door (CLI, bot, web) can show the same thing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nomad.batch._collect import COLLECTED_SCOPE
from nomad.batch._cost import ledger_cost
from nomad.batch._runs import SLOT_SCOPE, STATE_SCOPE, slot_id
from nomad.batch._schedule import next_slot
from nomad.errors import NomadError
from nomad.queue.base import Job, JobQueue, JobStatus

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob


def job_view(
    queue: JobQueue,
    job: Job,
    *,
    project: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any] | None:
    """The batch side of one job (None for other front doors): stored keys and ready state.

    ``ready`` is true only once the manifest is written, which happens after
    every output was copied: a succeeded run is not yet a stored one. With
    ``project`` the slot's cost is the billed one from the cluster ledger when
    a ledger row covers its wake (else the estimate made when it was stored).
    """
    if job.front_door != "batch":
        return None
    outcome = queue.get_state(COLLECTED_SCOPE, job.id) or {}
    cost = outcome.get("cost")
    if project is not None and outcome.get("status") == "stored":
        cost = ledger_cost(queue, project, _slot_jobs(queue, job), clock=clock) or cost
    if job.status is JobStatus.SUCCEEDED:
        state = outcome.get("status") or "succeeded, not yet stored (the next batch tick copies it)"
    else:
        state = job.status.value
    return {
        "batch": job.meta.get("batch"),
        "slot": job.meta.get("slot"),
        "try": job.meta.get("try", 1),
        "max_tries": job.meta.get("max_tries"),
        "kind": job.meta.get("kind"),
        "seed": job.meta.get("seed"),
        "state": state,
        "ready": outcome.get("status") == "stored",
        "stored_keys": outcome.get("keys", []),
        "manifest_key": outcome.get("manifest_key"),
        "latest_key": outcome.get("latest_key"),
        "filters": outcome.get("filters", []),
        "rejected": outcome.get("reason"),
        "next_try": outcome.get("next"),
        "slot_failed": outcome.get("slot_failed"),
        "cost": cost,
        "collect_error": None if outcome else _collect_error(queue, job),
    }


def _slot_jobs(queue: JobQueue, job: Job) -> list[Job]:
    """Every try of ``job``'s slot up to ``job``, oldest first."""
    slot = job.meta.get("slot")
    if not slot:
        return [job]
    rec = (
        queue.get_state(
            SLOT_SCOPE,
            slot_id(
                str(job.meta.get("batch")),
                dt.datetime.fromisoformat(slot),
                int(job.meta.get("rerun") or 0),
            ),
        )
        or {}
    )
    out = []
    for t in rec.get("tries", []):
        if t.get("job") == job.id:
            break
        try:
            out.append(queue.get(t["job"]))
        except (NomadError, KeyError):
            continue
    return [*out, job]


def _collect_error(queue: JobQueue, job: Job) -> str | None:
    if job.status is not JobStatus.SUCCEEDED:
        return None
    state = queue.get_state(STATE_SCOPE, str(job.meta.get("batch"))) or {}
    return state.get("last_error")


def slot_view(queue: JobQueue, name: str, slot: str, rerun: int = 0) -> dict[str, Any]:
    """One slot: its tries (job, seed, verdict), status, stored keys, manifest."""
    when = dt.datetime.fromisoformat(slot)
    rec = queue.get_state(SLOT_SCOPE, slot_id(name, when, rerun)) or {}
    tries = []
    for t in rec.get("tries", []):
        status, error = _status(queue, t.get("job"))
        tries.append({**t, "status": status, "error": error})
    status = rec.get("status", "-")
    if status == "running" and tries and tries[-1]["status"] in ("failed", "cancelled"):
        status = f"failed (run {tries[-1]['status']})"
    return {
        "name": name,
        "slot": when.isoformat(),
        "status": status,
        "ready": rec.get("status") == "ready",
        "keys": rec.get("keys", []),
        "manifest_key": rec.get("manifest_key"),
        "error": rec.get("error"),
        "tries": tries,
    }


def _status(queue: JobQueue, job_id: str | None) -> tuple[str, str | None]:
    """A try's job status and error (the job row is the truth; the slot record only points)."""
    if not job_id:
        return "?", None
    try:
        job = queue.get(job_id)
    except NomadError:
        return "gone", None
    return job.status.value, job.error


def schedule_table(
    jobs: list[BatchJob], queue: JobQueue | None, now: dt.datetime
) -> list[dict[str, Any]]:
    """Rows for ``nomad batch list``: schedule, last slot and its state, what blocks, errors."""
    rows = []
    for job in jobs:
        state = (queue.get_state(STATE_SCOPE, job.name) if queue else None) or {}
        last = None
        if queue is not None and state.get("last_slot"):
            last = slot_view(queue, job.name, state["last_slot"])
        rows.append(
            {
                "name": job.name,
                "schedule": job.schedule,
                "workflow": job.workflow,
                "catch_up": job.catch_up,
                "window": job.window,
                "last_slot": state.get("last_slot"),
                "last_job": state.get("last_job"),
                "last_reason": state.get("last_reason"),
                "last_status": last["status"] if last else None,
                "ready": bool(last and last["ready"]),
                "stored_keys": last["keys"] if last else [],
                "manifest_key": last["manifest_key"] if last else None,
                "blocked": state.get("blocked"),
                "skipped": state.get("skipped"),
                "error": state.get("last_error"),
                "error_at": state.get("last_error_at"),
                "next_slot": next_slot(job.schedule, now).isoformat(),
            }
        )
    return rows
