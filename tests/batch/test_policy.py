"""Which GPU a wake for batch work may use (pure policy): spot only if all agree, lowest price cap."""

from __future__ import annotations

from nomad import batch
from nomad.queue.base import Job


def bj(spot: bool, cap: float | None = None) -> Job:
    return Job("b", "w", front_door="batch", meta={"spot": spot, "max_price_per_hour": cap})


def test_all_batch_jobs_allow_spot_lowest_cap_wins() -> None:
    """Two batch jobs due in one window, both spot-tolerant: spot, capped at the lower of their caps."""
    req = batch.wake_request([bj(True, 0.8), bj(True, 0.5)], infra_spot=False, infra_max_price=2.0)
    assert req.spot and req.max_price_per_hour == 0.5 and "allow spot" in req.reason


def test_one_batch_job_refusing_spot_keeps_on_demand() -> None:
    """One batch job without `spot: true` keeps the wake on demand."""
    req = batch.wake_request([bj(True), bj(False)], infra_spot=False, infra_max_price=None)
    assert not req.spot and req.max_price_per_hour is None


def test_interactive_job_never_put_on_spot_it_did_not_ask_for() -> None:
    """A waiting interactive job gets infra's terms (no spot, infra's cap) even if batch allows spot."""
    jobs = [bj(True, 0.4), Job("i", "w", front_door="telegram")]
    req = batch.wake_request(jobs, infra_spot=False, infra_max_price=1.0)
    assert not req.spot and req.max_price_per_hour == 1.0 and "interactive" in req.reason


def test_window_wrapping_midnight() -> None:
    """A 22:00-02:00 window is open at 23:30 and 01:59, closed at 02:00 and 12:00."""
    import datetime as dt

    def at(h: int, m: int) -> dt.datetime:
        return dt.datetime(2026, 11, 23, h, m, tzinfo=dt.UTC)

    assert batch.in_window("22:00-02:00", at(23, 30)) and batch.in_window("22:00-02:00", at(1, 59))
    assert not batch.in_window("22:00-02:00", at(2, 0))
    assert batch.window_opens("22:00-02:00", at(12, 0)) == at(22, 0)
