"""Turning due slots into queue jobs: seeds, limits, windows — one job's trouble is its own.

Batch jobs are not users: the interactive per-user quotas never apply (a
``*/10`` schedule is 144 runs a day by design). Each batch job has its own
``limits`` instead, checked here against the runs it enqueued (kept in the
queue's state table). A job blocked by its limit, outside its window, or
failing to enqueue is recorded on that job (``nomad batch list`` shows it)
and the round goes on with the next job.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomad.batch._env import BatchEnv
from nomad.batch._schedule import as_utc, client_key, due_slot, in_window, window_opens
from nomad.errors import NomadError, UsageError
from nomad.queue.base import Job, JobQueue

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob

STATE_SCOPE = "batch"  # key: batch job name -> schedule state, limits history, last error
SLOT_SCOPE = "batch-slot"  # key: "<name>:<slot>[:rerunN]" -> tries, status, stored keys
DAY = dt.timedelta(days=1)
_SEED_MAX = 2**48


@dataclass(frozen=True)
class Fired:
    """One enqueue decision: which batch job, for which slot, and the queue's job."""

    name: str
    slot: dt.datetime
    job: Job
    reason: str = ""


@dataclass
class TickReport:
    """What one tick did, per batch job: fired, waiting (limit/window) or failed."""

    fired: list[Fired] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def find(jobs: list[BatchJob], name: str) -> BatchJob:
    """The batch job called ``name``, or a UsageError listing the known ones."""
    for job in jobs:
        if job.name == name:
            return job
    known = ", ".join(j.name for j in jobs) or "(none configured)"
    raise UsageError(
        f"no batch job named {name!r}; known: {known}", hint="see `batch.jobs` in nomad.yaml"
    )


def slot_id(name: str, slot: dt.datetime, rerun: int = 0) -> str:
    """The key of one slot's record (a ``--force`` re-run is a slot of its own)."""
    key = f"{name}:{as_utc(slot).strftime('%Y-%m-%dT%H:%MZ')}"
    return f"{key}:rerun{rerun}" if rerun else key


def seed_param(job: BatchJob, env: BatchEnv) -> str | None:
    """The workflow's seed parameter, if it has one (graph files have none)."""
    if job.workflow.endswith(".json"):
        return None
    from nomad.workflows import load_workflow

    wf = load_workflow(job.workflow, env.workflow_dirs)
    for name, spec in wf.params.items():
        if spec.type == "int" and (name == "seed" or name.endswith("_seed")):
            return name
    return None


def fire(
    queue: JobQueue,
    job: BatchJob,
    slot: dt.datetime,
    *,
    env: BatchEnv | None = None,
    attempt: int = 1,
    kind: str = "scheduled",
    rerun: int = 0,
    now: dt.datetime | None = None,
    rng: random.Random | None = None,
) -> Fired:
    """Enqueue one try of one slot (idempotent per slot and try) and remember it.

    Try 1 keeps a seed pinned in ``params``; every later try (a filter
    rejected the result) gets a fresh random seed, recorded in the job.
    """
    env = env or BatchEnv()
    params: dict[str, Any] = dict(job.params)
    seed: int | None = None
    sp = seed_param(job, env)
    if sp is not None:
        if attempt == 1 and sp in params:
            seed = int(params[sp])
        else:
            seed = (rng or random.SystemRandom()).randrange(0, _SEED_MAX)
        params[sp] = seed
    meta = {
        "batch": job.name,
        "slot": as_utc(slot).isoformat(),
        "output_key": job.output_key,
        "try": attempt,
        "max_tries": job.max_tries,
        "kind": kind,
        "rerun": rerun,
        "seed": seed,
        "spot": job.spot,
        "max_price_per_hour": job.max_price_per_hour,
        "window": job.window,
    }
    queued = queue.enqueue(
        job.workflow,
        params,
        front_door="batch",
        client_key=client_key(job.name, slot, attempt, rerun=rerun),
        meta=meta,
    )
    at = as_utc(now or dt.datetime.now(dt.UTC))
    state = queue.get_state(STATE_SCOPE, job.name) or {}
    fires = [f for f in state.get("fires", []) if _age(f, at) < DAY and f.get("job") != queued.id]
    fires.append({"job": queued.id, "at": at.isoformat()})
    pending = [p for p in state.get("pending", []) if p != queued.id] + [queued.id]
    state.update(fires=fires, pending=pending, last_job=queued.id)
    if attempt == 1:
        state.update(last_slot=as_utc(slot).isoformat(), last_kind=kind)
    state.pop("blocked", None)
    queue.put_state(STATE_SCOPE, job.name, state)
    sid = slot_id(job.name, slot, rerun)
    record = queue.get_state(SLOT_SCOPE, sid) or {
        "name": job.name,
        "slot": meta["slot"],
        "tries": [],
    }
    if queued.id not in [t["job"] for t in record["tries"]]:
        record["tries"].append({"job": queued.id, "try": attempt, "seed": seed})
    record.setdefault("status", "running")
    queue.put_state(SLOT_SCOPE, sid, record)
    return Fired(job.name, as_utc(slot), queued)


def blocked_by_limits(queue: JobQueue, job: BatchJob, now: dt.datetime) -> str | None:
    """Why the job may not enqueue another run now (its own ``limits``), or None."""
    state = queue.get_state(STATE_SCOPE, job.name) or {}
    fires = [f for f in state.get("fires", []) if _age(f, as_utc(now)) < DAY]
    lim = job.limits
    if lim.per_day is not None and len(fires) >= lim.per_day:
        return f"limit: {len(fires)} runs in the last 24 h (limits.per_day {lim.per_day})"
    if lim.in_flight is not None:
        active = 0
        for job_id in state.get("pending", []):  # however old: a run queued for days still counts
            try:
                if not queue.get(job_id).status.finished:
                    active += 1
            except NomadError:
                continue
        if active >= lim.in_flight:
            return f"limit: {active} run(s) still waiting or running (limits.in_flight {lim.in_flight})"
    return None


def tick(
    queue: JobQueue, jobs: list[BatchJob], now: dt.datetime, *, env: BatchEnv | None = None
) -> TickReport:
    """Enqueue every batch job whose slot is due; each job's trouble stays that job's."""
    report = TickReport()
    for job in jobs:
        try:
            _tick_one(queue, job, now, env or BatchEnv(), report)
        except Exception as exc:  # one job's fault (bad workflow file, queue hiccup) is its own
            text = _error_text(exc)
            report.errors[job.name] = text
            _note(queue, job.name, last_error=text, last_error_at=as_utc(now).isoformat())
    return report


def _tick_one(
    queue: JobQueue, job: BatchJob, now: dt.datetime, env: BatchEnv, report: TickReport
) -> None:
    state = queue.get_state(STATE_SCOPE, job.name) or {}
    last = dt.datetime.fromisoformat(state["last_slot"]) if "last_slot" in state else None
    slot, why = due_slot(job.schedule, last, now, catch_up=job.catch_up, window=job.window)
    if slot is None:
        if why.startswith("missed") and state.get("skipped") != why:
            _note(queue, job.name, skipped=why)
        return
    if not in_window(job.window, now):
        opens = window_opens(job.window or "", now)
        report.waiting[job.name] = (
            f"slot {slot:%H:%M}Z waits for its window {job.window} (opens {opens:%Y-%m-%d %H:%M}Z)"
        )
        _note(queue, job.name, blocked=report.waiting[job.name])
        return
    blocked = blocked_by_limits(queue, job, now)
    if blocked is not None:
        report.waiting[job.name] = blocked
        _note(queue, job.name, blocked=blocked)
        return
    kind = "scheduled" if why == "on time" else "catch_up"
    fired = fire(queue, job, slot, env=env, kind=kind, now=now)
    report.fired.append(Fired(fired.name, fired.slot, fired.job, why))
    _note(queue, job.name, last_reason=why, last_error=None, last_error_at=None)


def _note(queue: JobQueue, name: str, **fields: Any) -> None:
    """Merge ``fields`` into the job's state (None removes a field)."""
    state = queue.get_state(STATE_SCOPE, name) or {}
    for k, v in fields.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    queue.put_state(STATE_SCOPE, name, state)


def _age(fire_rec: dict[str, Any], now: dt.datetime) -> dt.timedelta:
    try:
        return now - dt.datetime.fromisoformat(str(fire_rec["at"]))
    except (KeyError, ValueError):
        return DAY


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, NomadError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"
