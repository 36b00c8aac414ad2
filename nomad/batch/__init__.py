"""Cron-triggered batch jobs: generate, filter, store, mark ready (e.g. a daily wallpaper).

A batch job is a front door like the bot: it enqueues and reports, and
``nomad serve`` runs the jobs (waking a GPU if needed). What makes it safe to
run from system cron, ``nomad batch serve`` or ``nomad serve --with-batch``,
even several at once:

- every batch job is **validated at load** (:func:`validate`): workflow,
  params, key templates, filters — ``file:line`` and nothing queued;
- each slot is enqueued **once**: the job's ``client_key`` is
  ``batch:<name>:<slot>``; after downtime only the latest missed slot runs
  (``catch_up: latest``) or none (``catch_up: none``);
- each batch job has **its own limits** and its own errors: one job blocked or
  broken never stops another's tick or collection;
- finished outputs pass the job's **filters**; a rejected result runs the
  slot again with a new seed, up to ``max_tries``;
- accepted outputs are **stored once** at their templated keys, then a
  **manifest** next to them and the job's **latest** pointer (ready = the
  manifest exists), exactly once even with two collectors.

See docs/batch.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomad.batch._collect import COLLECTED_SCOPE, CollectReport, collect
from nomad.batch._cost import WakeInfo, billed, estimate, ledger_cost
from nomad.batch._env import BatchEnv
from nomad.batch._filters import Decision, FilterError, image_stats, run_checks
from nomad.batch._policy import WakeRequest, wake_request
from nomad.batch._runs import (
    SLOT_SCOPE,
    STATE_SCOPE,
    Fired,
    TickReport,
    blocked_by_limits,
    find,
    fire,
    slot_id,
    tick,
)
from nomad.batch._schedule import (
    client_key,
    due_slot,
    in_window,
    latest_slot,
    next_slot,
    slot_stamp,
    window_opens,
)
from nomad.batch._validate import validate
from nomad.batch._view import job_view, schedule_table, slot_view
from nomad.errors import UsageError
from nomad.queue.base import JobQueue, JobStatus

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob

__all__ = [
    "COLLECTED_SCOPE",
    "SLOT_SCOPE",
    "STATE_SCOPE",
    "BatchEnv",
    "CollectReport",
    "Decision",
    "FilterError",
    "Fired",
    "RoundReport",
    "TickReport",
    "WakeInfo",
    "WakeRequest",
    "billed",
    "blocked_by_limits",
    "client_key",
    "collect",
    "due_slot",
    "estimate",
    "find",
    "fire",
    "image_stats",
    "in_window",
    "job_view",
    "latest_slot",
    "ledger_cost",
    "next_slot",
    "run_checks",
    "run_now",
    "run_round",
    "schedule_table",
    "slot_id",
    "slot_stamp",
    "slot_view",
    "tick",
    "validate",
    "wake_request",
    "window_opens",
]


@dataclass
class RoundReport:
    """One scheduler round: what was enqueued, stored, and each job's own trouble."""

    tick: TickReport = field(default_factory=TickReport)
    collect: CollectReport = field(default_factory=CollectReport)
    error: str | None = None  # the round itself could not run (queue unreachable)


def run_round(
    queue: JobQueue,
    jobs: list[BatchJob],
    storage: Any,
    now: dt.datetime,
    *,
    env: BatchEnv | None = None,
) -> RoundReport:
    """Tick then collect; a job's failure is recorded on that job and never ends the round.

    ``storage`` may be the error that prevented opening it: slots are still enqueued.
    """
    report = RoundReport()
    report.tick = tick(queue, jobs, now, env=env)
    if isinstance(storage, BaseException):  # storage could not even be set up
        from nomad.batch._runs import _error_text

        report.error = f"outputs not collected: {_error_text(storage)}"
        return report
    try:
        report.collect = collect(queue, storage, jobs=jobs, env=env, now=now)
    except Exception as exc:  # listing the queue failed: nothing to collect this round
        from nomad.batch._runs import _error_text

        report.error = _error_text(exc)
    return report


def run_now(
    queue: JobQueue,
    job: BatchJob,
    slot: dt.datetime,
    *,
    force: bool = False,
    env: BatchEnv | None = None,
) -> tuple[Fired, str]:
    """``nomad batch run``: enqueue ``slot`` now, or say why not; ``force`` re-runs a failed slot.

    Within the same minute the slot's job is returned when it is waiting,
    running or succeeded; a failed or cancelled one is never handed back as
    if it were new: without ``force`` it is refused, with ``force`` the slot
    runs again (a re-run of its own, keys unchanged, seed new).
    """
    rerun = 0
    while queue.get_state(SLOT_SCOPE, slot_id(job.name, slot, rerun + 1)) is not None:
        rerun += 1
    if queue.get_state(SLOT_SCOPE, slot_id(job.name, slot, rerun)) is None:
        return fire(queue, job, slot, env=env, kind="manual"), "queued"
    view = slot_view(queue, job.name, slot.isoformat(), rerun)
    last = view["tries"][-1] if view["tries"] else {"status": "?", "job": None}
    failed = view["status"].startswith("failed") or last["status"] in ("failed", "cancelled")
    when = f"{slot:%Y-%m-%d %H:%M}Z"
    if not failed and last["job"]:
        return Fired(
            job.name, slot, queue.get(last["job"])
        ), f"slot {when} already {view['status']}"
    if not force:
        raise UsageError(
            f"batch job {job.name}: slot {when} already ran and failed "
            f"({view['error'] or last.get('error') or last['status']}; job {last['job']})",
            hint=f"`nomad batch run {job.name} --force` runs it again",
        )
    fired = fire(queue, job, slot, env=env, kind="manual", rerun=rerun + 1)
    return fired, f"re-running failed slot {when} (re-run {rerun + 1})"


def is_active(status: JobStatus) -> bool:
    """A run that still waits or runs."""
    return not status.finished
