"""The production queue on PostgreSQL — the only module that imports psycopg (lazily).

Leases use ``FOR UPDATE SKIP LOCKED`` so concurrent workers never wait on
each other's rows; enqueue and requeue ``NOTIFY nomad_jobs`` inside the
transaction so waiters (``LISTEN``) wake the moment a job commits.
Migrations run under an advisory lock, so many processes may start at once.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nomad.errors import NotAvailableError, QueueError
from nomad.queue._sql import Cursor, SqlQueue, iter_sql
from nomad.queue.base import JobStatus
from nomad.queue.sqlite import migrations

CHANNEL = "nomad_jobs"
CANCEL_CHANNEL = "nomad_cancel"  # payload: the cancelled job's id
_MIGRATION_LOCK = 7_310_001


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise NotAvailableError(
            "the PostgreSQL queue needs psycopg", hint="pip install 'nomad-comfy[postgres]'"
        ) from exc
    return psycopg


class PostgresQueue(SqlQueue):
    """``JobQueue`` on PostgreSQL; one connection per instance (serialized), plus one for LISTEN."""

    lock_clause = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pg = _psycopg()
        self._dsn = dsn
        self._listen: Any = None
        self._fast: Any = None  # the relaxed-commit session, opened on first use
        self._listen_lock = threading.Lock()  # one LISTEN connection, one waiter at a time
        self._cancel_listen: Any = None  # LISTEN nomad_cancel (wait_for_cancel)
        self._cancel_lock = threading.Lock()
        self._conn = self._connect()
        self._migrate()

    def __repr__(self) -> str:
        return "PostgresQueue(<dsn hidden>)"

    def _connect(self) -> Any:
        try:
            return self._pg.connect(self._dsn, autocommit=True, connect_timeout=10)
        except self._pg.Error as exc:
            raise QueueError(
                f"cannot connect to the PostgreSQL queue: {_short(exc, self._dsn)}",
                hint="check queue.url (NOMAD_QUEUE_URL) and that the server is up",
            ) from exc

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Cursor]:
        with self._lock, self._translated(), self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    @contextmanager
    def _auto(self, relaxed: bool = False) -> Iterator[Cursor]:
        """Autocommit statements: one round trip each. Relaxed ones go through a second
        session with ``synchronous_commit = off`` (no wait for the WAL flush)."""
        with self._lock, self._translated():
            conn = self._relaxed_conn() if relaxed else self._conn
            with conn.cursor() as cur:
                yield cur

    def _relaxed_conn(self) -> Any:
        if self._fast is None or self._fast.closed:
            conn = self._connect()
            conn.execute("SET synchronous_commit = off")
            self._fast = conn
        return self._fast

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except self._pg.OperationalError as exc:
            if self._conn.closed:
                self._conn = self._connect()  # next call gets a fresh connection
            raise QueueError(
                f"PostgreSQL queue failed: {_short(exc, self._dsn)}",
                hint="the operation was rolled back; retry",
            ) from exc
        except self._pg.Error as exc:
            raise QueueError(f"PostgreSQL queue failed: {_short(exc, self._dsn)}") from exc

    def _notify_sql(self, sql: str) -> str:
        return (
            f"WITH ins AS ({sql}), wake AS (SELECT pg_notify('{CHANNEL}', '')) "
            "SELECT ins.* FROM ins, wake"
        )

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _json(self, value: Any) -> Any:
        from psycopg.types.json import Jsonb

        return Jsonb(value)

    def _merge(self, col: str, *, keep_existing: bool = False) -> str:
        return f"(?::jsonb || {col})" if keep_existing else f"({col} || ?::jsonb)"

    def _notify(self, cur: Cursor) -> None:
        cur.execute(f"NOTIFY {CHANNEL}")

    def _notify_cancel(self, cur: Cursor, job_id: str) -> None:
        cur.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, job_id))

    def _relaxed(self, cur: Cursor) -> None:
        cur.execute("SET LOCAL synchronous_commit = off")

    def _user_lock(self, cur: Cursor, user: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"nomad-user:{user}",))

    def _migrate(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)"
            )
            cur.execute("SELECT version FROM schema_version")
            done = {r[0] for r in cur.fetchall()}
            for version, text in migrations("postgres"):
                if version in done:
                    continue
                for stmt in iter_sql(text):
                    cur.execute(stmt)
                cur.execute("INSERT INTO schema_version VALUES (%s, %s)", (version, self.clock()))

    def wait_for_work(self, timeout: float) -> bool:
        """True at once if work exists, else block on NOTIFY for at most ``timeout`` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        if not self._listen_lock.acquire(timeout=max(0.0, timeout)):
            return self.has_work()  # another thread is listening for this instance
        try:
            conn = self._listener()  # LISTEN before looking, so no commit slips between
            if self.has_work():
                return True
            while (left := deadline - time.monotonic()) > 0:
                for _ in conn.notifies(timeout=left, stop_after=1):
                    return True
            return self.has_work()
        finally:
            self._listen_lock.release()

    def wait_for_cancel(self, job_ids: list[str], timeout: float) -> list[str]:
        """The cancelled ones among ``job_ids``; blocks on NOTIFY nomad_cancel up to ``timeout``."""
        wanted = set(job_ids)
        deadline = time.monotonic() + max(0.0, timeout)
        if not wanted or not self._cancel_lock.acquire(timeout=max(0.0, timeout)):
            return self._cancelled(job_ids)
        try:
            if self._cancel_listen is None or self._cancel_listen.closed:
                conn = self._connect()
                conn.execute(f"LISTEN {CANCEL_CHANNEL}")  # before looking: no commit slips by
                self._cancel_listen = conn
            found = self._cancelled(job_ids)
            while not found and (left := deadline - time.monotonic()) > 0:
                for note in self._cancel_listen.notifies(timeout=left, stop_after=1):
                    if note.payload in wanted:
                        found = self._cancelled(job_ids)
            return found
        except QueueError:
            raise
        except Exception as exc:  # the listening connection dropped: a fresh one next time
            self._cancel_listen = None
            raise QueueError(f"waiting for cancellations failed: {_short(exc, self._dsn)}") from exc
        finally:
            self._cancel_lock.release()

    def _cancelled(self, job_ids: list[str]) -> list[str]:
        return [j for j in job_ids if self.get(j).status is JobStatus.CANCELLED]

    def _listener(self) -> Any:
        if self._listen is None or self._listen.closed:
            conn = self._connect()
            conn.execute(f"LISTEN {CHANNEL}")
            self._listen = conn
        return self._listen

    def close(self) -> None:
        """Close both connections (idempotent)."""
        with self._lock:
            for conn in (self._conn, self._listen, self._fast, self._cancel_listen):
                if conn is not None and not conn.closed:
                    conn.close()


def _short(exc: Exception, dsn: str = "") -> str:
    """The first line of a driver message, with the DSN and any password masked
    (libpq echoes a malformed URI whole, password included)."""
    line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if dsn:
        line = line.replace(dsn, "<queue.url>")
    line = re.sub(r"(://[^:/@\s\"']*:)[^@\s\"']*@", r"\1***@", line)
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", line, flags=re.IGNORECASE)
