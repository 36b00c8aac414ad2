"""Cron-triggered batch jobs (e.g. a daily wallpaper stored to S3).

A batch job is a front door like the bot: it only enqueues and reports. Two
properties make it safe to run from system cron, from ``nomad batch serve``
or inside ``nomad serve``, even several at once:

- each scheduled fire time becomes a job whose ``client_key`` is
  ``batch:<name>:<fire time>``, so enqueueing the same slot twice is a no-op
  (the queue's idempotent enqueue does the dedup, not a local lock);
- missed slots are not replayed in bulk after downtime: only the latest
  missed slot runs (a machine off for a week makes one wallpaper, not seven).

When a batch job succeeds its outputs are copied to the job's
``output_key`` template (``{name}``, ``{date}``, ``{time}``, ``{index}``,
``{ext}``) in the outputs bucket, once (recorded in the queue's state table).
"""

from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from croniter import croniter

from nomad.errors import UsageError
from nomad.queue.base import Job, JobQueue, JobStatus

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob
    from nomad.storage import Storage

UTC = dt.UTC
STATE_SCOPE = "batch"


@dataclass(frozen=True)
class Fired:
    """One enqueue decision: which batch job, for which slot, and the queue's job."""

    name: str
    slot: dt.datetime
    job: Job


def latest_slot(schedule: str, now: dt.datetime) -> dt.datetime:
    """The most recent fire time at or before ``now`` (UTC)."""
    it = croniter(schedule, now + dt.timedelta(seconds=1))
    prev: dt.datetime = it.get_prev(dt.datetime)
    return prev.astimezone(UTC) if prev.tzinfo else prev.replace(tzinfo=UTC)


def next_slot(schedule: str, now: dt.datetime) -> dt.datetime:
    """The next fire time strictly after ``now`` (UTC)."""
    nxt: dt.datetime = croniter(schedule, now).get_next(dt.datetime)
    return nxt.astimezone(UTC) if nxt.tzinfo else nxt.replace(tzinfo=UTC)


def due_slot(schedule: str, last: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    """The slot to run now, or None: the latest slot not yet run (never older ones)."""
    slot = latest_slot(schedule, now)
    if last is not None and slot <= last:
        return None
    return slot


def client_key(name: str, slot: dt.datetime) -> str:
    """The idempotency key of one scheduled run."""
    return f"batch:{name}:{slot.strftime('%Y-%m-%dT%H:%MZ')}"


def find(jobs: list[BatchJob], name: str) -> BatchJob:
    """The batch job called ``name``, or a UsageError listing the known ones."""
    for job in jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in jobs) or "(none configured)"
    raise UsageError(f"no batch job named {name!r}; known: {known}", hint="see `batch.jobs` in nomad.yaml")


def fire(queue: JobQueue, job: BatchJob, slot: dt.datetime) -> Fired:
    """Enqueue one slot of ``job`` (idempotent) and remember it as the last run."""
    key = client_key(job.name, slot)
    queued = queue.enqueue(
        job.workflow,
        dict(job.params),
        front_door="batch",
        user=f"batch:{job.name}",
        client_key=key,
        meta={"batch": job.name, "slot": slot.isoformat(), "output_key": job.output_key},
    )
    queue.put_state(STATE_SCOPE, job.name, {"last_slot": slot.isoformat(), "last_job": queued.id})
    return Fired(job.name, slot, queued)


def tick(queue: JobQueue, jobs: list[BatchJob], now: dt.datetime) -> list[Fired]:
    """Enqueue every batch job whose latest slot has not run yet."""
    fired = []
    for job in jobs:
        state = queue.get_state(STATE_SCOPE, job.name) or {}
        last = dt.datetime.fromisoformat(state["last_slot"]) if "last_slot" in state else None
        slot = due_slot(job.schedule, last, now)
        if slot is not None:
            fired.append(fire(queue, job, slot))
    return fired


def output_key(template: str, job: Job, index: int, source_key: str) -> str:
    """Render an output key template for one output of a finished batch job."""
    slot = dt.datetime.fromisoformat(str(job.meta.get("slot", dt.datetime.now(UTC).isoformat())))
    ext = posixpath.splitext(source_key)[1]
    values: dict[str, Any] = {
        "name": job.meta.get("batch", "batch"),
        "date": slot.strftime("%Y-%m-%d"),
        "time": slot.strftime("%H%M"),
        "index": index,
        "ext": ext,
        "job": job.id,
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f"batch output_key {template!r}: bad placeholder ({exc})",
            hint="use {name} {date} {time} {index} {ext} {job}",
        ) from None


def collect(queue: JobQueue, storage: Storage, *, limit: int = 200) -> list[str]:
    """Copy outputs of finished batch jobs to their templated keys, once each; returns new keys."""
    written: list[str] = []
    for job in queue.list(status=[JobStatus.SUCCEEDED], limit=limit):
        if job.front_door != "batch" or queue.get_state(STATE_SCOPE + "-collected", job.id):
            continue
        keys = []
        for i, src in enumerate(job.outputs):
            dest = output_key(str(job.meta.get("output_key")), job, i, src)
            storage.put_bytes(dest, storage.get_bytes(src))
            keys.append(dest)
        queue.put_state(STATE_SCOPE + "-collected", job.id, {"keys": keys})
        written += keys
    return written


def schedule_table(jobs: list[BatchJob], queue: JobQueue | None, now: dt.datetime) -> list[dict[str, Any]]:
    """Rows for `nomad batch list`: name, schedule, workflow, last and next run."""
    rows = []
    for job in jobs:
        state = (queue.get_state(STATE_SCOPE, job.name) if queue else None) or {}
        rows.append(
            {
                "name": job.name,
                "schedule": job.schedule,
                "workflow": job.workflow,
                "last_slot": state.get("last_slot"),
                "last_job": state.get("last_job"),
                "next_slot": next_slot(job.schedule, now).isoformat(),
            }
        )
    return rows
