"""When a batch job runs: cron slots in UTC, what is due after downtime, idempotency keys.

Pure functions of (schedule, last run, now): no clock is read here, so
``nomad batch tick --now`` and the tests decide what time it is.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from croniter import croniter

UTC = dt.UTC
CatchUp = Literal["latest", "none"]


def as_utc(when: dt.datetime) -> dt.datetime:
    """``when`` as an aware UTC datetime (naive values are taken as UTC)."""
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def latest_slot(schedule: str, now: dt.datetime) -> dt.datetime:
    """The most recent fire time at or before ``now`` (UTC)."""
    prev: dt.datetime = croniter(schedule, as_utc(now) + dt.timedelta(seconds=1)).get_prev(
        dt.datetime
    )
    return as_utc(prev)


def next_slot(schedule: str, now: dt.datetime) -> dt.datetime:
    """The next fire time strictly after ``now`` (UTC)."""
    nxt: dt.datetime = croniter(schedule, as_utc(now)).get_next(dt.datetime)
    return as_utc(nxt)


def due_slot(
    schedule: str,
    last: dt.datetime | None,
    now: dt.datetime,
    *,
    catch_up: CatchUp = "latest",
    window: str | None = None,
    grace: dt.timedelta = dt.timedelta(minutes=2),
) -> tuple[dt.datetime | None, str]:
    """The slot to run now (or None) and why, never older slots than the latest.

    ``catch_up: latest`` runs the latest slot not yet run, however late (a
    machine off for a week makes one wallpaper, not seven; a brand-new job
    runs its latest past slot at once — the reason says so). ``none`` runs a
    slot only within ``grace`` of its time — of its ``window``'s opening when
    it has one (a 23:00 slot with a 02:00-05:00 window is on time at 02:00);
    a missed one is skipped.
    """
    slot = latest_slot(schedule, now)
    if last is not None and slot <= last:
        return None, "already run"
    late = as_utc(now) - (window_opens(window, slot) if window else slot)
    if late <= grace:
        return slot, "on time"
    if catch_up == "none":
        return None, f"missed {slot:%Y-%m-%d %H:%M}Z (catch_up: none)"
    if last is None:
        return slot, f"first start: running the latest past slot {slot:%Y-%m-%d %H:%M}Z"
    return slot, f"catching up: latest missed slot {slot:%Y-%m-%d %H:%M}Z"


def slot_stamp(slot: dt.datetime) -> str:
    """The slot as it appears in keys and idempotency keys (minute precision, UTC)."""
    return as_utc(slot).strftime("%Y-%m-%dT%H:%MZ")


def client_key(name: str, slot: dt.datetime, attempt: int = 1, *, rerun: int = 0) -> str:
    """The idempotency key of one run of a slot: try ``attempt``, ``rerun`` after ``--force``."""
    key = f"batch:{name}:{slot_stamp(slot)}"
    if rerun:
        key += f":rerun{rerun}"
    return key if attempt <= 1 else f"{key}:try{attempt}"


def in_window(window: str | None, when: dt.datetime) -> bool:
    """Whether ``when`` (UTC) falls in a daily ``HH:MM-HH:MM`` window (may wrap midnight)."""
    if window is None:
        return True
    start, end = (_minutes(part) for part in window.split("-"))
    t = as_utc(when)
    m = t.hour * 60 + t.minute
    return start <= m < end if start <= end else (m >= start or m < end)


def window_opens(window: str, when: dt.datetime) -> dt.datetime:
    """The next time at or after ``when`` the window is open."""
    if in_window(window, when):
        return as_utc(when)
    start = _minutes(window.split("-")[0])
    t = as_utc(when)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    opens = day + dt.timedelta(minutes=start)
    return opens if opens > t else opens + dt.timedelta(days=1)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)
