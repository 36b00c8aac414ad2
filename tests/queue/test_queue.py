"""One suite, two backends: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad.errors import ConfigError, JobNotFound, LimitExceeded
from nomad.queue import JobStatus, Limits, open_queue
from nomad.queue._sql import SqlQueue

from .conftest import Clock


def test_enqueue_then_get_round_trips_fields(queue: SqlQueue) -> None:
    """A job's fields survive the database unchanged."""
    job = queue.enqueue(
        "flux_schnell",
        {"prompt": "a cat", "steps": 4},
        inputs={"image": "in/a.png"},
        front_door="telegram",
        user="42",
        chat="42:7",
        meta={"lang": "en"},
    )
    got = queue.get(job.id)
    assert got.params == {"prompt": "a cat", "steps": 4}
    assert got.inputs == {"image": "in/a.png"}
    assert (got.front_door, got.user, got.chat, got.meta) == (
        "telegram",
        "42",
        "42:7",
        {"lang": "en"},
    )
    assert got.status is JobStatus.QUEUED and got.attempts == 0 and "queued_at" in got.times


def test_get_unknown_raises_job_not_found(queue: SqlQueue) -> None:
    """Unknown ids raise JobNotFound naming the id."""
    with pytest.raises(JobNotFound, match="nope"):
        queue.get("nope")


def test_enqueue_is_idempotent_on_client_key(queue: SqlQueue) -> None:
    """The same client_key returns the same job and adds no row."""
    a = queue.enqueue("w", {"x": 1}, client_key="tg:1:99")
    b = queue.enqueue("w", {"x": 2}, client_key="tg:1:99")
    assert a.id == b.id and b.params == {"x": 1}
    assert sum(queue.counts().values()) == 1


def test_concurrent_enqueue_same_key_makes_one_job(make_queue: Callable[..., SqlQueue]) -> None:
    """Two connections racing on one client_key still create exactly one job."""
    queues = [make_queue() for _ in range(4)]
    ids: list[str] = []
    barrier = threading.Barrier(len(queues))

    def go(q: SqlQueue) -> None:
        barrier.wait()
        ids.append(q.enqueue("w", {}, client_key="race").id)

    threads = [threading.Thread(target=go, args=(q,)) for q in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(set(ids)) == 1 and len(ids) == 4


def test_lease_takes_oldest_and_never_twice(queue: SqlQueue) -> None:
    """Leases go oldest-first; a leased job is not handed out again while its lease lives."""
    a = queue.enqueue("w", {})
    b = queue.enqueue("w", {})
    first = queue.lease("w1")
    second = queue.lease("w2")
    assert first is not None and second is not None
    assert (first.id, second.id) == (a.id, b.id)
    assert first.status is JobStatus.RUNNING and first.attempts == 1 and first.worker == "w1"
    assert queue.lease("w3") is None


def test_lease_records_cluster(queue: SqlQueue) -> None:
    """The lease stamps the cluster so a lost cluster's jobs can be requeued."""
    queue.enqueue("w", {})
    job = queue.lease("c1#0", cluster="c1")
    assert job is not None and queue.get(job.id).cluster == "c1"


def test_expired_lease_is_retried_and_stale_complete_refused(queue: SqlQueue, clock: Clock) -> None:
    """After lease expiry another worker gets the job; the first worker's result is discarded."""
    job = queue.enqueue("w", {})
    first = queue.lease("w1", lease_seconds=10)
    assert first is not None and queue.lease("w2") is None
    clock.advance(11)
    second = queue.lease("w2")
    assert second is not None and second.id == job.id and second.attempts == 2
    assert first.lease_token is not None and second.lease_token is not None
    assert not queue.heartbeat(job.id, first.lease_token)
    assert not queue.complete(job.id, first.lease_token, outputs=["stale"])
    assert queue.complete(job.id, second.lease_token, outputs=["good"])
    assert queue.get(job.id).outputs == ["good"]


def test_heartbeat_extends_lease_and_reports_progress(queue: SqlQueue, clock: Clock) -> None:
    """A heartbeating worker keeps its job past the original expiry and publishes progress."""
    queue.enqueue("w", {})
    job = queue.lease("w1", lease_seconds=10)
    assert job is not None and job.lease_token
    clock.advance(8)
    assert queue.heartbeat(job.id, job.lease_token, progress=0.5, lease_seconds=10)
    clock.advance(8)
    assert queue.lease("w2") is None
    assert queue.get(job.id).progress == 0.5


def test_complete_is_idempotent(queue: SqlQueue) -> None:
    """Completing twice with the same token is a quiet True and changes nothing."""
    queue.enqueue("w", {})
    job = queue.lease("w1")
    assert job is not None and job.lease_token
    assert queue.complete(
        job.id, job.lease_token, outputs=["a"], gpu="L4", cost=0.01, times={"executed_at": 5.0}
    )
    assert queue.complete(job.id, job.lease_token, outputs=["b"])
    done = queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.outputs == ["a"] and done.gpu == "L4"
    assert done.cost == pytest.approx(0.01)
    assert {"queued_at", "started_at", "executed_at", "finished_at"} <= set(done.times)


def test_fail_retries_until_max_attempts(make_queue: Callable[..., SqlQueue]) -> None:
    """A retryable failure requeues until attempts run out, then the job is FAILED with the error."""
    queue = make_queue(max_attempts=2)
    job = queue.enqueue("w", {})
    lease = queue.lease("w1")
    assert lease is not None and lease.lease_token
    assert queue.fail(job.id, lease.lease_token, "comfy died").status is JobStatus.QUEUED
    lease = queue.lease("w1")
    assert lease is not None and lease.lease_token
    failed = queue.fail(job.id, lease.lease_token, "comfy died again")
    assert failed.status is JobStatus.FAILED and failed.error == "comfy died again"
    assert queue.lease("w1") is None


def test_fail_without_retry_is_final(queue: SqlQueue) -> None:
    """retry=False fails at once even with attempts left."""
    job = queue.enqueue("w", {})
    lease = queue.lease("w1")
    assert lease is not None and lease.lease_token
    assert (
        queue.fail(job.id, lease.lease_token, "bad params", retry=False).status is JobStatus.FAILED
    )


def test_lease_expiring_on_last_attempt_fails_the_job(
    make_queue: Callable[..., SqlQueue], clock: Clock
) -> None:
    """A job whose worker dies on every attempt ends FAILED instead of looping forever."""
    queue = make_queue(max_attempts=1, lease_seconds=5)
    job = queue.enqueue("w", {})
    assert queue.lease("w1") is not None
    clock.advance(60)
    assert queue.lease("w2") is None
    got = queue.get(job.id)
    assert got.status is JobStatus.FAILED and "lease expired" in (got.error or "")


def test_cancel_queued_and_running(queue: SqlQueue) -> None:
    """Cancel works on waiting jobs and on running ones; the runner's heartbeat then says stop."""
    a = queue.enqueue("w", {})
    b = queue.enqueue("w", {})
    running = queue.lease("w1")
    assert running is not None and running.id == a.id and running.lease_token
    assert queue.cancel(b.id).status is JobStatus.CANCELLED
    assert queue.cancel(a.id).status is JobStatus.CANCELLED
    assert not queue.heartbeat(a.id, running.lease_token)
    assert not queue.complete(a.id, running.lease_token, outputs=["x"])
    assert queue.get(a.id).status is JobStatus.CANCELLED
    assert queue.lease("w2") is None


def test_cancel_finished_job_is_unchanged(queue: SqlQueue) -> None:
    """Cancelling a finished job returns it as it was."""
    queue.enqueue("w", {})
    job = queue.lease("w1")
    assert job is not None and job.lease_token
    queue.complete(job.id, job.lease_token, outputs=[])
    assert queue.cancel(job.id).status is JobStatus.SUCCEEDED


def test_in_flight_limit(make_queue: Callable[..., SqlQueue]) -> None:
    """A user at the in-flight limit is refused; finishing a job frees a slot; others are unaffected."""
    queue = make_queue(limits=Limits(in_flight=2, per_day=None))
    queue.enqueue("w", {}, user="u1")
    queue.enqueue("w", {}, user="u1")
    with pytest.raises(LimitExceeded, match="in flight") as info:
        queue.enqueue("w", {}, user="u1")
    assert info.value.resets_at is None
    queue.enqueue("w", {}, user="u2")
    queue.enqueue("w", {})  # the shell has no user and no quota
    job = queue.lease("w1")
    assert job is not None and job.lease_token
    queue.complete(job.id, job.lease_token, outputs=[])
    queue.enqueue("w", {}, user="u1")


def test_zero_limit_refuses_every_user_job(make_queue: Callable[..., SqlQueue]) -> None:
    """A limit of 0 is a limit (it used to read as 'no quota' and skip the check)."""
    queue = make_queue(limits=Limits(in_flight=0, per_day=None))
    with pytest.raises(LimitExceeded):
        queue.enqueue("w", {}, user="u1")
    assert queue.list() == []


def test_per_day_limit_with_resets_at(make_queue: Callable[..., SqlQueue], clock: Clock) -> None:
    """The daily quota refuses with resets_at = oldest job in the window + 24 h, and then frees."""
    queue = make_queue(limits=Limits(in_flight=None, per_day=2))
    first_at = clock.now
    queue.enqueue("w", {}, user="u1")
    clock.advance(3600)
    queue.enqueue("w", {}, user="u1")
    with pytest.raises(LimitExceeded) as info:
        queue.enqueue("w", {}, user="u1")
    assert info.value.resets_at == pytest.approx(first_at + 86400)
    clock.now = first_at + 86401
    queue.enqueue("w", {}, user="u1")


def test_idempotent_retry_is_not_charged_to_quota(make_queue: Callable[..., SqlQueue]) -> None:
    """Re-sending the same client_key at the limit returns the job instead of raising."""
    queue = make_queue(limits=Limits(in_flight=1, per_day=None))
    a = queue.enqueue("w", {}, user="u1", client_key="k1")
    assert queue.enqueue("w", {}, user="u1", client_key="k1").id == a.id


def test_requeue_running_by_cluster(queue: SqlQueue) -> None:
    """Only the lost cluster's running jobs go back, without losing an attempt."""
    a = queue.enqueue("w", {})
    b = queue.enqueue("w", {})
    queue.lease("c1#0", cluster="c1")
    queue.lease("c2#0", cluster="c2")
    assert queue.requeue_running(cluster="c1", reason="preempted") == 1
    got_a, got_b = queue.get(a.id), queue.get(b.id)
    assert got_a.status is JobStatus.QUEUED and got_a.attempts == 0 and got_a.detail == "preempted"
    assert got_b.status is JobStatus.RUNNING
    again = queue.lease("c3#0", cluster="c3")
    assert again is not None and again.id == a.id


def test_set_status_annotates_only_waiting_jobs(queue: SqlQueue) -> None:
    """Autoscaler marks waiting jobs waking with a detail; running jobs and old stamps are untouched."""
    a = queue.enqueue("w", {})
    b = queue.enqueue("w", {})
    queue.lease("w1")
    queue.set_status(
        [a.id, b.id], JobStatus.WAKING, detail="waking a GPU", times={"cluster_requested_at": 10.0}
    )
    queue.set_status(
        [b.id], JobStatus.WAKING, detail="still waking", times={"cluster_requested_at": 99.0}
    )
    got_a, got_b = queue.get(a.id), queue.get(b.id)
    assert got_a.status is JobStatus.RUNNING and "cluster_requested_at" not in got_a.times
    assert got_b.status is JobStatus.WAKING and got_b.detail == "still waking"
    assert got_b.times["cluster_requested_at"] == 10.0
    assert queue.waiting_ids() == [b.id]
    assert queue.lease("w2") is not None


def test_counts_position_and_stats(queue: SqlQueue, clock: Clock) -> None:
    """Counts per status, 1-based positions among waiting jobs, and totals since a time."""
    start = clock.now
    jobs = [queue.enqueue("w", {}) for _ in range(3)]
    leased = queue.lease("w1")
    assert leased is not None and leased.lease_token
    assert queue.position(jobs[0].id) is None
    assert [queue.position(j.id) for j in jobs[1:]] == [1, 2]
    queue.complete(leased.id, leased.lease_token, outputs=[], cost=0.25)
    queue.cancel(jobs[2].id)
    counts = queue.counts()
    assert counts[JobStatus.SUCCEEDED] == 1 and counts[JobStatus.QUEUED] == 1
    assert counts[JobStatus.CANCELLED] == 1 and counts[JobStatus.FAILED] == 0
    stats = queue.stats_since(start)
    assert stats == {"jobs": 3, "succeeded": 1, "failed": 0, "cancelled": 1, "cost": 0.25}
    assert queue.stats_since(clock.now + 1)["jobs"] == 0


def test_list_filters_newest_first(queue: SqlQueue) -> None:
    """list() is newest first and filters by status and user."""
    a = queue.enqueue("w", {}, user="u1")
    b = queue.enqueue("w", {}, user="u2")
    queue.cancel(a.id)
    assert [j.id for j in queue.list()] == [b.id, a.id]
    assert [j.id for j in queue.list(status=[JobStatus.CANCELLED])] == [a.id]
    assert [j.id for j in queue.list(user="u2")] == [b.id]
    assert len(queue.list(limit=1)) == 1


def test_state_documents_upsert(queue: SqlQueue) -> None:
    """put_state/get_state store and replace small JSON documents per (scope, key)."""
    assert queue.get_state("bot", "s1") is None
    queue.put_state("bot", "s1", {"step": 1, "nested": {"a": [1, 2]}})
    queue.put_state("bot", "s1", {"step": 2})
    queue.put_state("autoscaler", "s1", {"state": "cold"})
    assert queue.get_state("bot", "s1") == {"step": 2}
    assert queue.get_state("autoscaler", "s1") == {"state": "cold"}


def test_wait_for_work_wakes_on_enqueue(make_queue: Callable[..., SqlQueue]) -> None:
    """A waiter returns True when another connection enqueues, and False when nothing comes."""
    waiter, producer = make_queue(clock=lambda: 0.0), make_queue()
    assert waiter.wait_for_work(0.05) is False
    woke: list[bool] = []
    t = threading.Thread(target=lambda: woke.append(waiter.wait_for_work(20.0)))
    t.start()
    producer.enqueue("w", {})
    t.join(timeout=25)
    assert woke == [True]


def test_reopen_keeps_jobs_and_migrations_are_idempotent(
    make_queue: Callable[..., SqlQueue],
) -> None:
    """Opening the same database again migrates nothing twice and sees the same jobs."""
    job = make_queue().enqueue("w", {})
    assert make_queue().get(job.id).id == job.id


def test_open_queue_defaults_to_sqlite_in_data_dir(tmp_path: Path) -> None:
    """An empty URL means the embedded SQLite file in the data dir."""
    q = open_queue(None, tmp_path)
    try:
        q.enqueue("w", {})
    finally:
        q.close()
    assert (tmp_path / "queue.db").exists()


def test_open_queue_rejects_unknown_scheme(tmp_path: Path) -> None:
    """A URL with an unknown scheme is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="mysql"):
        open_queue("mysql://x", tmp_path)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://bob:s3cr3tpw@[bad/db",  # libpq echoes a malformed URI whole
        "postgresql://bob:s3cr3tpw@127.0.0.1:1/db",
        "host=127.0.0.1 port=1 user=bob password=s3cr3tpw",
    ],
)
def test_postgres_connect_errors_never_show_the_password(dsn: str) -> None:
    """A bad or unreachable queue.url gives a QueueError that never contains the password."""
    pytest.importorskip("psycopg")
    from nomad.errors import QueueError
    from nomad.queue.postgres import PostgresQueue

    with pytest.raises(QueueError) as info:
        PostgresQueue(dsn)
    assert "cannot connect" in str(info.value)
    assert "s3cr3tpw" not in str(info.value)
