"""The SQL shared by both queue implementations.

PostgreSQL and SQLite speak almost the same SQL (``UPDATE … RETURNING``,
``ON CONFLICT``), so the queue logic lives here once and each dialect module
supplies a connection, a transaction, JSON handling and its locking clause.
That is what makes "same behaviour, same test suite" cheap to keep true.
"""

from __future__ import annotations

import abc
import builtins
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from nomad.errors import JobNotFound, LimitExceeded
from nomad.queue.base import Job, JobQueue, JobStatus

COLS = (
    "id",
    "workflow",
    "params",
    "inputs",
    "status",
    "front_door",
    "user_ref",
    "chat",
    "client_key",
    "attempts",
    "max_attempts",
    "error",
    "outputs",
    "times",
    "gpu",
    "cluster",
    "cost",
    "progress",
    "detail",
    "lease_token",
    "lease_expires_at",
    "worker",
    "meta",
)
_SELECT = ", ".join(COLS)
WAITING = "('queued', 'waking')"
ACTIVE = "('queued', 'waking', 'running')"
DAY = 86400.0


@dataclass(frozen=True)
class Limits:
    """Per-user quotas; ``None`` disables one. Users without an id (the shell) are never limited."""

    in_flight: int | None = None
    per_day: int | None = None


class Cursor(abc.ABC):
    """The tiny slice of DB-API both drivers share (so typing stays honest)."""

    rowcount: int

    @abc.abstractmethod
    def execute(self, sql: str, params: Any = ...) -> Any: ...

    @abc.abstractmethod
    def fetchone(self) -> Any: ...

    @abc.abstractmethod
    def fetchall(self) -> list[Any]: ...


class SqlQueue(JobQueue):
    """Queue logic over a dialect: placeholders ``?`` are rewritten by :meth:`_sql`."""

    lock_clause = ""  # PostgreSQL: " FOR UPDATE SKIP LOCKED"
    poll_interval = 0.05

    def __init__(
        self,
        *,
        lease_seconds: float = 300.0,
        max_attempts: int = 3,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.limits = limits or Limits()
        self.clock = clock
        self._lock = threading.RLock()
        self._next_reap = 0.0

    # -- dialect hooks ----------------------------------------------------------------

    @abc.abstractmethod
    def _tx(self, write: bool = True) -> AbstractContextManager[Cursor]:
        """A transaction; writes take the write lock up front (BEGIN IMMEDIATE on SQLite)."""

    def _auto(self, relaxed: bool = False) -> AbstractContextManager[Cursor]:
        """A cursor whose every statement is its own transaction (fewer round trips on
        PostgreSQL). ``relaxed``: may be lost in a database crash without harm."""
        return self._relaxed_tx() if relaxed else self._tx()

    @contextmanager
    def _relaxed_tx(self) -> Iterator[Cursor]:
        with self._tx() as cur:
            self._relaxed(cur)
            yield cur

    def _notify_sql(self, sql: str) -> str:
        """``sql`` (an INSERT … RETURNING) made to also wake waiters, where the dialect can."""
        return sql

    def _sql(self, sql: str) -> str:
        return sql

    @abc.abstractmethod
    def _json(self, value: Any) -> Any:
        """A Python value as the driver wants a JSON parameter."""

    @abc.abstractmethod
    def _merge(self, col: str, *, keep_existing: bool = False) -> str:
        """SQL merging a JSON object parameter into ``col`` (new keys win unless keep_existing)."""

    def _notify(self, cur: Cursor) -> None:
        """Wake waiters after commit (PostgreSQL NOTIFY; SQLite waiters poll)."""

    def _notify_cancel(self, cur: Cursor, job_id: str) -> None:
        """Tell ``wait_for_cancel`` waiters after commit (PostgreSQL NOTIFY; SQLite polls)."""

    def _relaxed(self, cur: Cursor) -> None:
        """This transaction may be lost in a database crash without harm (leases, heartbeats,
        annotations: a lost lease only means the job is leased again and the stale
        holder's ``complete`` is refused). PostgreSQL skips the WAL flush for it."""

    def _user_lock(self, cur: Cursor, user: str) -> None:
        """Serialize quota checks per user (SQLite's write lock already does)."""

    def _exec(self, cur: Cursor, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Cursor:
        cur.execute(self._sql(sql), tuple(params))
        return cur

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(
        self,
        workflow: str,
        params: dict[str, Any],
        *,
        inputs: dict[str, str] | None = None,
        front_door: str = "cli",
        user: str | None = None,
        chat: str | None = None,
        client_key: str | None = None,
        max_attempts: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Job:
        """Insert a job; same ``client_key`` ⇒ same job; quotas checked in the same transaction."""
        now = self.clock()
        lim = self.limits
        quota = user is not None and (lim.in_flight is not None or lim.per_day is not None)
        if client_key is None and not quota:  # nothing to check first: one statement
            with self._auto() as cur:
                row = self._exec(
                    cur,
                    self._notify_sql(_INSERT),
                    self._insert_args(
                        workflow,
                        params,
                        inputs,
                        front_door,
                        user,
                        chat,
                        None,
                        max_attempts,
                        meta,
                        now,
                    ),
                ).fetchone()
            return self._job(row)
        with self._tx() as cur:
            if client_key is not None:
                found = self._one(cur, "client_key = ?", client_key)
                if found is not None:
                    return found
            if user is not None:
                self._check_limits(cur, user, now)
            row = self._exec(
                cur,
                _INSERT,
                self._insert_args(
                    workflow,
                    params,
                    inputs,
                    front_door,
                    user,
                    chat,
                    client_key,
                    max_attempts,
                    meta,
                    now,
                ),
            ).fetchone()
            if row is None:  # a concurrent enqueue with the same key won
                found = self._one(cur, "client_key = ?", client_key)
                assert found is not None
                return found
            self._notify(cur)
            return self._job(row)

    def _insert_args(
        self,
        workflow: str,
        params: dict[str, Any],
        inputs: dict[str, str] | None,
        front_door: str,
        user: str | None,
        chat: str | None,
        client_key: str | None,
        max_attempts: int | None,
        meta: dict[str, Any] | None,
        now: float,
    ) -> tuple[Any, ...]:
        return (
            secrets.token_hex(6),
            workflow,
            self._json(params),
            self._json(inputs or {}),
            front_door,
            user,
            chat,
            client_key,
            max_attempts or self.max_attempts,
            self._json(meta or {}),
            self._json({"queued_at": now}),
            now,
        )

    def _check_limits(self, cur: Cursor, user: str, now: float) -> None:
        lim = self.limits
        if lim.in_flight is None and lim.per_day is None:
            return
        self._user_lock(cur, user)
        if lim.in_flight is not None:
            n = self._exec(
                cur, f"SELECT COUNT(*) FROM jobs WHERE user_ref = ? AND status IN {ACTIVE}", (user,)
            ).fetchone()[0]
            if n >= lim.in_flight:
                raise LimitExceeded(
                    f"user {user} already has {n} job(s) in flight (limit {lim.in_flight})",
                    hint="wait for one to finish, or cancel one",
                    resets_at=None,
                )
        if lim.per_day is not None:
            n, oldest = self._exec(
                cur,
                "SELECT COUNT(*), MIN(created_at) FROM jobs WHERE user_ref = ? AND created_at >= ?",
                (user, now - DAY),
            ).fetchone()
            if n >= lim.per_day:
                resets = float(oldest) + DAY
                raise LimitExceeded(
                    f"user {user} reached {lim.per_day} jobs in the last 24 hours",
                    hint=f"the next slot frees at {_hhmm(resets)}",
                    resets_at=resets,
                )

    # -- reads --------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job, or ``JobNotFound`` naming the id."""
        with self._tx(write=False) as cur:
            job = self._one(cur, "id = ?", job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}", hint="`nomad jobs` lists recent jobs")
        return job

    def list(
        self, *, status: list[JobStatus] | None = None, user: str | None = None, limit: int = 50
    ) -> list[Job]:
        """Newest first, optionally filtered by status and user."""
        where: builtins.list[str] = ["1 = 1"]
        args: builtins.list[Any] = []
        if status:
            where.append(f"status IN ({', '.join('?' for _ in status)})")
            args.extend(JobStatus(s).value for s in status)
        if user is not None:
            where.append("user_ref = ?")
            args.append(user)
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur,
                f"SELECT {_SELECT} FROM jobs WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                [*args, int(limit)],
            ).fetchall()
        return [self._job(r) for r in rows]

    def counts(self) -> dict[JobStatus, int]:
        """Jobs per status; every status present (0 when none)."""
        with self._tx(write=False) as cur:
            rows = self._exec(cur, "SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        out = {s: 0 for s in JobStatus}
        out.update({JobStatus(s): int(n) for s, n in rows})
        return out

    def position(self, job_id: str) -> int | None:
        """1-based place among waiting jobs, oldest first."""
        job = self.get(job_id)
        if job.status not in (JobStatus.QUEUED, JobStatus.WAKING):
            return None
        with self._tx(write=False) as cur:
            n = self._exec(
                cur,
                f"""SELECT COUNT(*) FROM jobs WHERE status IN {WAITING}
                AND seq <= (SELECT seq FROM jobs WHERE id = ?)""",
                (job_id,),
            ).fetchone()[0]
        return int(n) or None

    def stats_since(self, since: float) -> dict[str, float]:
        """jobs (created), succeeded/failed/cancelled (finished) and cost since ``since``."""
        with self._tx(write=False) as cur:
            row = self._exec(
                cur,
                """SELECT
                SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END),
                SUM(CASE WHEN finished_at >= ? AND status = 'succeeded' THEN 1 ELSE 0 END),
                SUM(CASE WHEN finished_at >= ? AND status = 'failed' THEN 1 ELSE 0 END),
                SUM(CASE WHEN finished_at >= ? AND status = 'cancelled' THEN 1 ELSE 0 END),
                SUM(CASE WHEN finished_at >= ? THEN cost ELSE 0 END)
                FROM jobs WHERE created_at >= ? OR finished_at >= ?""",
                (since,) * 7,
            ).fetchone()
        keys = ("jobs", "succeeded", "failed", "cancelled", "cost")
        return {k: float(v or 0) for k, v in zip(keys, row, strict=True)}

    def has_work(self) -> bool:
        """Whether a leasable job exists right now (cheap; used by waiters)."""
        now = self.clock()
        with self._tx(write=False) as cur:
            row = self._exec(
                cur,
                f"SELECT 1 FROM jobs WHERE status IN {ACTIVE} AND ({_LEASABLE}) LIMIT 1",
                (now,),
            ).fetchone()
        return row is not None

    def wait_for_work(self, timeout: float) -> bool:
        """Bounded poll (no NOTIFY on SQLite): True once a job is leasable, False at timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.has_work():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.poll_interval, left))

    # -- leases -------------------------------------------------------------------------

    def lease(
        self, worker: str, *, lease_seconds: float | None = None, cluster: str | None = None
    ) -> Job | None:
        """Take the oldest leasable job atomically; a fresh token fences out earlier holders."""
        now = self.clock()
        ttl = lease_seconds if lease_seconds is not None else self.lease_seconds
        with self._auto(relaxed=True) as cur:
            if now >= self._next_reap:
                self._reap(cur, now)
            row = self._exec(
                cur,
                f"""
                UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = ?,
                    lease_expires_at = ?, worker = ?, cluster = COALESCE(?, cluster),
                    progress = NULL, detail = NULL, error = NULL, times = {self._merge("times")}
                WHERE id = (SELECT id FROM jobs WHERE status IN {ACTIVE} AND ({_LEASABLE})
                            ORDER BY seq LIMIT 1{self.lock_clause})
                RETURNING {_SELECT}""",
                (
                    secrets.token_hex(8),
                    now + ttl,
                    worker,
                    cluster,
                    self._json({"started_at": now}),
                    now,
                ),
            ).fetchone()
        return self._job(row) if row is not None else None

    def _reap(self, cur: Cursor, now: float) -> None:
        """Expired leases with no attempts left become FAILED (a worker died on every try)."""
        self._next_reap = now + min(self.lease_seconds / 4, 5.0)
        self._exec(
            cur,
            """UPDATE jobs SET status = 'failed', finished_at = ?, lease_token = NULL,
            error = 'the worker stopped answering (lease expired ' || attempts || ' times)'
            WHERE status = 'running' AND lease_expires_at < ? AND attempts >= max_attempts""",
            (now, now),
        )

    def heartbeat(
        self,
        job_id: str,
        lease_token: str,
        *,
        progress: float | None = None,
        lease_seconds: float | None = None,
    ) -> bool:
        """Extend the lease; False once the job was cancelled or leased to someone else."""
        ttl = lease_seconds if lease_seconds is not None else self.lease_seconds
        with self._auto(relaxed=True) as cur:
            n = self._exec(
                cur,
                """UPDATE jobs SET lease_expires_at = ?, progress = COALESCE(?, progress)
                WHERE id = ? AND lease_token = ? AND status = 'running'""",
                (self.clock() + ttl, progress, job_id, lease_token),
            ).rowcount
        return n == 1

    def note(
        self,
        job_id: str,
        lease_token: str,
        *,
        times: dict[str, float] | None = None,
        gpu: str | None = None,
    ) -> bool:
        """Record phase timestamps while running (fenced by the lease like heartbeat)."""
        with self._auto(relaxed=True) as cur:
            n = self._exec(
                cur,
                f"""UPDATE jobs SET times = {self._merge("times")}, gpu = COALESCE(?, gpu)
                WHERE id = ? AND lease_token = ? AND status = 'running'""",
                (self._json(times or {}), gpu, job_id, lease_token),
            ).rowcount
        return n == 1

    def complete(
        self,
        job_id: str,
        lease_token: str,
        *,
        outputs: builtins.list[str],
        gpu: str | None = None,
        cost: float | None = None,
        times: dict[str, float] | None = None,
    ) -> bool:
        """SUCCEEDED exactly once: only the lease holder wins; repeating it is a quiet True."""
        now = self.clock()
        merged = {**(times or {}), "finished_at": (times or {}).get("finished_at", now)}
        with self._auto() as cur:
            n = self._exec(
                cur,
                f"""UPDATE jobs SET status = 'succeeded', outputs = ?, gpu = COALESCE(?, gpu),
                cost = ?, times = {self._merge("times")}, finished_at = ?, progress = 1.0,
                lease_expires_at = NULL, detail = NULL
                WHERE id = ? AND lease_token = ? AND status = 'running'""",
                (self._json(outputs), gpu, cost, self._json(merged), now, job_id, lease_token),
            ).rowcount
            if n == 1:
                return True
            row = self._exec(
                cur, "SELECT status, lease_token FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return row is not None and row[0] == "succeeded" and row[1] == lease_token

    def fail(self, job_id: str, lease_token: str, error: str, *, retry: bool = True) -> Job:
        """Requeue while attempts remain (if retry), else FAILED; stale tokens change nothing."""
        now = self.clock()
        with self._tx() as cur:
            row = self._exec(
                cur,
                f"""UPDATE jobs SET
                status = CASE WHEN ? AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                finished_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE ? END,
                error = ?, lease_token = NULL, lease_expires_at = NULL, progress = NULL
                WHERE id = ? AND lease_token = ? AND status = 'running'
                RETURNING {_SELECT}""",
                (retry, retry, now, error[:2000], job_id, lease_token),
            ).fetchone()
            if row is not None and row[COLS.index("status")] == "queued":
                self._notify(cur)
        return self._job(row) if row is not None else self.get(job_id)

    def release(self, job_id: str, lease_token: str, reason: str = "") -> bool:
        """Give a running job back unharmed (graceful shutdown): queued again, attempt not counted."""
        with self._tx() as cur:
            n = self._exec(
                cur,
                """UPDATE jobs SET status = 'queued', lease_token = NULL, lease_expires_at = NULL,
                worker = NULL, progress = NULL, detail = ?,
                attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                WHERE id = ? AND lease_token = ? AND status = 'running'""",
                (reason or "requeued: the worker shut down", job_id, lease_token),
            ).rowcount
            if n:
                self._notify(cur)
        return n == 1

    def cancel(self, job_id: str) -> Job:
        """Cancel a waiting or running job; finished jobs are returned unchanged."""
        now = self.clock()
        with self._tx() as cur:
            row = self._exec(
                cur,
                f"""UPDATE jobs SET status = 'cancelled', finished_at = ?,
                detail = 'cancelled', lease_expires_at = NULL
                WHERE id = ? AND status IN {ACTIVE} RETURNING {_SELECT}""",
                (now, job_id),
            ).fetchone()
            if row is not None:
                self._notify_cancel(cur, job_id)
        return self._job(row) if row is not None else self.get(job_id)

    def requeue_running(self, *, cluster: str | None = None, reason: str = "") -> int:
        """Running jobs go back to the queue; the lost attempt is not held against them."""
        where, args = "status = 'running'", [reason or "requeued: its GPU went away"]
        if cluster is not None:
            where += " AND cluster = ?"
            args.append(cluster)
        with self._tx() as cur:
            n = self._exec(
                cur,
                f"""UPDATE jobs SET status = 'queued', lease_token = NULL,
                lease_expires_at = NULL, worker = NULL, progress = NULL, detail = ?,
                attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                WHERE {where}""",
                args,
            ).rowcount
            if n:
                self._notify(cur)
        return int(n)

    def set_status(
        self,
        job_ids: builtins.list[str],
        status: JobStatus,
        *,
        detail: str | None = None,
        times: dict[str, float] | None = None,
    ) -> None:
        """Annotate waiting jobs only (running ones are the worker's); existing stamps are kept."""
        if not job_ids:
            return
        status = JobStatus(status)
        if status not in (JobStatus.QUEUED, JobStatus.WAKING):
            raise ValueError("set_status only moves jobs between queued and waking")
        marks = ", ".join("?" for _ in job_ids)
        with self._auto(relaxed=True) as cur:
            self._exec(
                cur,
                f"""UPDATE jobs SET status = ?, detail = ?,
                times = {self._merge("times", keep_existing=True)}
                WHERE id IN ({marks}) AND status IN {WAITING}""",
                [status.value, detail, self._json(times or {}), *job_ids],
            )

    def waiting_ids(self, limit: int = 1000) -> builtins.list[str]:
        """Ids of waiting jobs, oldest first (what the autoscaler annotates)."""
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur, f"SELECT id FROM jobs WHERE status IN {WAITING} ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [r[0] for r in rows]

    def running_by_cluster(self) -> dict[str, int]:
        """Running jobs per cluster name (the autoscaler's per-cluster load)."""
        with self._tx(write=False) as cur:
            rows = self._exec(
                cur,
                "SELECT COALESCE(cluster, ''), COUNT(*) FROM jobs "
                "WHERE status = 'running' GROUP BY cluster",
            ).fetchall()
        return {c: int(n) for c, n in rows}

    # -- state documents ------------------------------------------------------------------

    def get_state(self, scope: str, key: str) -> dict[str, Any] | None:
        """The JSON document under (scope, key), or None."""
        with self._tx(write=False) as cur:
            row = self._exec(
                cur, "SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
        if row is None:
            return None
        value = _loads(row[0])
        return value if isinstance(value, dict) else None

    def put_state(self, scope: str, key: str, value: dict[str, Any]) -> None:
        """Upsert (scope, key) -> value."""
        with self._tx() as cur:
            self._exec(
                cur,
                """INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (scope, key)
                DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at""",
                (scope, key, self._json(value), self.clock()),
            )

    def claim_state(
        self, scope: str, key: str, value: dict[str, Any], *, stale_after: float
    ) -> bool:
        """Insert (scope, key) unless a document younger than ``stale_after`` seconds is there.

        One atomic statement, so of several processes claiming at once exactly
        one gets True (a claim older than ``stale_after`` may be taken over:
        its holder is presumed dead). Used as a cross-process lock, e.g. by
        batch collectors so every output key is written once.
        """
        now = self.clock()
        with self._tx() as cur:
            row = self._exec(
                cur,
                """INSERT INTO state (scope, key, value, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,
                updated_at = excluded.updated_at WHERE state.updated_at < ?
                RETURNING key""",
                (scope, key, self._json(value), now, now - stale_after),
            ).fetchone()
        return row is not None

    def delete_state(self, scope: str, key: str) -> None:
        """Remove (scope, key) (releases a claim); a missing document is not an error."""
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM state WHERE scope = ? AND key = ?", (scope, key))

    # -- rows -------------------------------------------------------------------------------

    def _one(self, cur: Cursor, where: str, arg: Any) -> Job | None:
        row = self._exec(cur, f"SELECT {_SELECT} FROM jobs WHERE {where}", (arg,)).fetchone()
        return self._job(row) if row is not None else None

    @staticmethod
    def _job(row: Any) -> Job:
        d = dict(zip(COLS, row, strict=True))
        return Job(
            id=d["id"],
            workflow=d["workflow"],
            params=_loads(d["params"]),
            inputs=_loads(d["inputs"]),
            status=JobStatus(d["status"]),
            front_door=d["front_door"],
            user=d["user_ref"],
            chat=d["chat"],
            client_key=d["client_key"],
            attempts=int(d["attempts"]),
            max_attempts=int(d["max_attempts"]),
            error=d["error"],
            outputs=list(_loads(d["outputs"])),
            times=dict(_loads(d["times"])),
            gpu=d["gpu"],
            cluster=d["cluster"],
            cost=d["cost"],
            progress=d["progress"],
            detail=d["detail"],
            lease_token=d["lease_token"],
            lease_expires_at=d["lease_expires_at"],
            worker=d["worker"],
            meta=_loads(d["meta"]),
        )


_INSERT = f"""
    INSERT INTO jobs (id, workflow, params, inputs, status, front_door, user_ref, chat,
                      client_key, max_attempts, meta, times, created_at)
    VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (client_key) DO NOTHING
    RETURNING {_SELECT}"""
_LEASABLE = "status IN ('queued', 'waking') OR (lease_expires_at < ? AND attempts < max_attempts)"


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ts))


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def iter_sql(text: str) -> Iterator[str]:
    """Statements of a migration file (split on ';' at line ends; our SQL has no procedures)."""
    for chunk in text.split(";\n"):
        body = "\n".join(
            line for line in chunk.splitlines() if not line.strip().startswith("--")
        ).strip()
        if body:
            yield body.rstrip(";")
