"""The cluster ledger and the leader lease on both backends (SQLite file, fresh PostgreSQL DB)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from nomad.backends.base import Offer
from nomad.queue._sql import SqlQueue
from nomad.queue.lease import LeaderLease, LeaseHeld
from nomad.queue.ledger import ClusterLedger, LedgerConflict, LedgerState
from tests.queue.conftest import Clock

OFFER = Offer("vast", "Texas", "1x-a", "RTX4090", 1, 0.60, False, 24.0)
DAY = 86400.0


@pytest.fixture
def book(queue: SqlQueue, clock: Clock) -> ClusterLedger:
    """The ledger of project 'demo' on the queue under test."""
    return ClusterLedger(queue, "demo", clock=clock)


def test_row_is_written_before_launch_and_one_open_row_per_name(book: ClusterLedger) -> None:
    """intend records offer, price and who asked; a second intent on an open name is refused."""
    row = book.intend("demo-serve", "fake", "autoscaler", OFFER)
    (seen,) = book.open_rows()
    assert seen.state is LedgerState.LAUNCHING and seen.price_per_hour == 0.60
    assert seen.offer == OFFER and seen.requested_by == "autoscaler" and seen.id == row.id
    with pytest.raises(LedgerConflict, match="still open"):
        book.intend("demo-serve", "fake", "up", OFFER)
    book.confirm_gone(row.id, "down")
    assert book.open_rows() == [] and book.intend("demo-serve", "fake", "up", OFFER).open


def test_projects_do_not_see_each_other(queue: SqlQueue, clock: Clock) -> None:
    """Two projects sharing one database keep separate ledgers (names may repeat)."""
    a, b = ClusterLedger(queue, "a", clock=clock), ClusterLedger(queue, "b", clock=clock)
    a.intend("gpu", "fake", "up", OFFER)
    b.intend("gpu", "fake", "up", OFFER)
    assert [r.project for r in a.open_rows()] == ["a"] and len(b.open_rows()) == 1


def test_spend_accrues_per_started_minute_at_the_recorded_price(
    book: ClusterLedger, clock: Clock
) -> None:
    """$0.60/h: 61 s cost two minutes; closing stops the clock; the row's money stays in the day."""
    clock.now = 20_000 * DAY + 3600  # 01:00 UTC
    row = book.intend("gpu", "fake", "up", OFFER)
    clock.advance(61)
    assert book.spend_today() == pytest.approx(0.02)
    book.mark_up(row.id, ["http://127.0.0.1:1"])
    clock.advance(3600 - 61)
    book.confirm_gone(row.id)
    clock.advance(7200)
    assert book.spend_today() == pytest.approx(0.60)
    assert book.get(row.id).ended_at is not None  # type: ignore[union-attr]


def test_spend_today_counts_only_the_part_after_midnight(queue: SqlQueue) -> None:
    """A row open since 23:00 yesterday counts 2 h at 02:00; yesterday's closed rows count nothing."""
    clock = Clock(20_000 * DAY - 3 * 3600)
    book = ClusterLedger(queue, "demo", clock=clock)
    old = book.intend("old", "fake", "up", OFFER)
    clock.advance(3600)
    book.confirm_gone(old.id)
    clock.advance(3600)  # 23:00
    book.intend("live", "fake", "up", OFFER)
    clock.now = 20_000 * DAY + 2 * 3600
    assert book.spend_today() == pytest.approx(1.20)


def test_lost_and_failed_rows_stay_open_until_confirmed(book: ClusterLedger) -> None:
    """mark() moves state and keeps the row open; only confirm_gone closes it."""
    row = book.intend("gpu", "fake", "autoscaler", OFFER)
    book.mark(row.id, LedgerState.FAILED, "launch failed: ClusterSetUpError")
    assert book.find_open("gpu").state is LedgerState.FAILED  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        book.mark(row.id, LedgerState.GONE)
    book.confirm_gone(row.id)
    assert book.find_open("gpu") is None and book.last("gpu").detail.startswith("launch failed")  # type: ignore[union-attr]


def test_second_lease_holder_is_refused_with_host_pid_and_since(
    make_queue: Callable[..., SqlQueue], clock: Clock
) -> None:
    """One serve per project: the second is told who holds it; it takes over once released."""
    first = LeaderLease(make_queue(), "demo", clock=clock)
    second = LeaderLease(make_queue(), "demo", clock=clock)
    first.acquire()
    with pytest.raises(LeaseHeld) as info:
        second.acquire()
    assert f"pid {os.getpid()}" in info.value.message and socket.gethostname() in info.value.message
    assert "since" in info.value.message and "--standby" in (info.value.hint or "")
    assert LeaderLease(make_queue(), "other", clock=clock).try_acquire() is None  # other project
    first.release()
    assert second.try_acquire() is None and not first.renew()


def test_lease_expires_when_the_holder_stops_renewing(
    make_queue: Callable[..., SqlQueue], clock: Clock
) -> None:
    """A holder silent past its TTL loses the lease; its late renew says so."""
    first = LeaderLease(make_queue(), "demo", ttl=30, clock=clock)
    second = LeaderLease(make_queue(), "demo", ttl=30, clock=clock)
    first.acquire()
    clock.advance(20)
    assert first.renew() and second.try_acquire() is not None
    clock.advance(31)
    assert second.try_acquire() is None
    assert not first.renew()


def test_lease_of_a_dead_process_on_this_host_is_taken_at_once(
    make_queue: Callable[..., SqlQueue], clock: Clock
) -> None:
    """A SIGKILLed serve on this host does not make the next one wait out the TTL."""
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    ghost = LeaderLease(make_queue(), "demo", ttl=3600, clock=clock)
    ghost.pid, ghost.holder = pid, f"{ghost.host}:{pid}:dead"
    ghost.acquire()
    assert LeaderLease(make_queue(), "demo", clock=clock).try_acquire() is None
