"""Batch front door: slots, catch-up, idempotent enqueue, seeds, `batch run` and its --force."""

from __future__ import annotations

import datetime as dt

import pytest

from nomad import batch
from nomad.config.schema import BatchJob
from nomad.errors import UsageError
from nomad.queue.base import JobQueue, JobStatus

UTC = dt.UTC
WALLPAPER = BatchJob(
    name="wallpaper",
    schedule="0 7 * * *",
    workflow="flux_schnell",
    params={"prompt": "a calm lake at dawn"},
)


def t(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def batch_jobs(queue: JobQueue) -> list:  # type: ignore[type-arg]
    return [j for j in queue.list(limit=500) if j.front_door == "batch"]


def test_due_slot_only_latest_missed_and_says_why() -> None:
    """After a week offline only the latest missed slot is due; a first start says it runs a past slot."""
    assert batch.due_slot("0 7 * * *", t(16, 7), t(23, 8)) == (
        t(23, 7),
        "catching up: latest missed slot 2026-11-23 07:00Z",
    )
    assert batch.due_slot("0 7 * * *", t(23, 7), t(23, 8))[0] is None
    slot, why = batch.due_slot("0 7 * * *", None, t(23, 6, 59))
    assert slot == t(22, 7) and why.startswith("first start: running the latest past slot")
    assert batch.due_slot("0 7 * * *", None, t(23, 7, 1)) == (t(23, 7), "on time")


def test_catch_up_none_skips_missed_slots() -> None:
    """`catch_up: none` runs a slot only on time; a missed one (or a first start late) is skipped."""
    slot, why = batch.due_slot("0 7 * * *", t(16, 7), t(23, 8), catch_up="none")
    assert slot is None and "missed 2026-11-23 07:00Z" in why
    assert batch.due_slot("0 7 * * *", None, t(23, 8), catch_up="none")[0] is None
    assert batch.due_slot("0 7 * * *", t(22, 7), t(23, 7, 1), catch_up="none")[0] == t(23, 7)


def test_tick_enqueues_each_slot_once_with_a_recorded_seed(sqlite_queue: JobQueue) -> None:
    """Ticking every minute enqueues a slot once, as a batch job with its seed pinned in params."""
    rep = batch.tick(sqlite_queue, [WALLPAPER], t(23, 7, 0))
    assert [f.slot for f in rep.fired] == [t(23, 7)] and not rep.errors
    assert batch.tick(sqlite_queue, [WALLPAPER], t(23, 7, 1)).fired == []
    [job] = batch_jobs(sqlite_queue)
    assert job.client_key == "batch:wallpaper:2026-11-23T07:00Z"
    assert job.user is None  # not a user: the per-user quotas never apply
    assert isinstance(job.params["seed"], int) and job.meta["seed"] == job.params["seed"]
    assert job.params["prompt"] == "a calm lake at dawn" and job.meta["try"] == 1
    sqlite_queue.cancel(job.id)  # finished: the in_flight limit frees
    assert len(batch.tick(sqlite_queue, [WALLPAPER], t(24, 7, 0)).fired) == 1


def test_two_schedulers_same_slot_one_job(sqlite_queue: JobQueue) -> None:
    """Two schedulers firing the same slot produce one job (client_key idempotency)."""
    a = batch.fire(sqlite_queue, WALLPAPER, t(23, 7))
    b = batch.fire(sqlite_queue, WALLPAPER, t(23, 7))
    assert a.job.id == b.job.id and len(batch_jobs(sqlite_queue)) == 1


def test_window_defers_a_slot_until_it_opens(sqlite_queue: JobQueue) -> None:
    """A 02:00-05:00 window holds a 23:00 slot (reported) and fires it when the window opens."""
    job = WALLPAPER.model_copy(update={"schedule": "0 23 * * *", "window": "02:00-05:00"})
    rep = batch.tick(sqlite_queue, [job], t(23, 23, 0))
    assert rep.fired == [] and "waits for its window 02:00-05:00" in rep.waiting["wallpaper"]
    rep = batch.tick(sqlite_queue, [job], t(24, 2, 0))
    assert [f.slot for f in rep.fired] == [t(23, 23)]


def test_jobs_due_in_one_window_fire_together(sqlite_queue: JobQueue) -> None:
    """Two jobs (23:00 and 01:00 slots) with one 02:00-05:00 window are enqueued in the same tick."""
    a = WALLPAPER.model_copy(
        update={"name": "a", "schedule": "0 23 * * *", "window": "02:00-05:00"}
    )
    b = WALLPAPER.model_copy(update={"name": "b", "schedule": "0 1 * * *", "window": "02:00-05:00"})
    assert batch.tick(sqlite_queue, [a, b], t(23, 22, 0)).fired == []  # window closed
    assert batch.tick(sqlite_queue, [a, b], t(24, 1, 30)).fired == []  # still closed
    rep = batch.tick(sqlite_queue, [a, b], t(24, 2, 0))
    assert sorted((f.name, f.slot) for f in rep.fired) == [("a", t(23, 23)), ("b", t(24, 1))]


def test_catch_up_none_counts_lateness_from_the_window() -> None:
    """With `catch_up: none` a 23:00 slot held for a 02:00 window is on time at 02:00, missed at 03:00."""
    due = batch.due_slot(
        "0 23 * * *", t(22, 23), t(24, 2, 0), catch_up="none", window="02:00-05:00"
    )
    assert due == (t(23, 23), "on time")
    late = batch.due_slot(
        "0 23 * * *", t(22, 23), t(24, 3, 0), catch_up="none", window="02:00-05:00"
    )
    assert late[0] is None


def test_in_flight_limit_counts_a_run_queued_for_days(sqlite_queue: JobQueue) -> None:
    """A run still queued after three days (GPU budget exhausted) holds the in_flight slot."""
    batch.tick(sqlite_queue, [WALLPAPER], t(20, 7, 0))
    rep = batch.tick(sqlite_queue, [WALLPAPER], t(23, 7, 0))
    assert rep.fired == [] and "limits.in_flight 1" in rep.waiting["wallpaper"]
    assert len(batch_jobs(sqlite_queue)) == 1


def test_find_unknown_lists_known() -> None:
    """An unknown batch name is a usage error that lists the configured ones."""
    with pytest.raises(UsageError, match="known: wallpaper"):
        batch.find([WALLPAPER], "wallpapr")


def test_run_now_refuses_a_failed_slot_and_force_reruns_it(sqlite_queue: JobQueue) -> None:
    """`batch run` in the same minute never hands back a failed job as new; --force re-runs it."""
    q = sqlite_queue
    first, note = batch.run_now(q, WALLPAPER, t(23, 12, 30))
    assert note == "queued"
    again, note = batch.run_now(q, WALLPAPER, t(23, 12, 30))
    assert again.job.id == first.job.id and "already running" in note
    leased = q.lease("w")
    assert leased is not None and leased.id == first.job.id
    q.fail(first.job.id, leased.lease_token or "", "ComfyUI exploded", retry=False)
    with pytest.raises(UsageError, match="already ran and failed"):
        batch.run_now(q, WALLPAPER, t(23, 12, 30))
    forced, note = batch.run_now(q, WALLPAPER, t(23, 12, 30), force=True)
    assert forced.job.id != first.job.id and "re-run 1" in note
    assert forced.job.status is JobStatus.QUEUED and forced.job.meta["rerun"] == 1
    same, _ = batch.run_now(q, WALLPAPER, t(23, 12, 30), force=True)
    assert same.job.id == forced.job.id  # the re-run is in progress: nothing new
