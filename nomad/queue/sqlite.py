"""The embedded queue: one SQLite file (WAL, busy timeout) in the nomad data dir.

Writers take the database write lock up front (``BEGIN IMMEDIATE``), so a
lease is one atomic ``UPDATE … RETURNING`` even across processes; readers
never block writers under WAL. SQLite has no NOTIFY, so waiters poll with a
bound (:meth:`SqlQueue.wait_for_work`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from nomad.errors import QueueError
from nomad.queue._sql import Cursor, SqlQueue, iter_sql


class SQLiteQueue(SqlQueue):
    """``JobQueue`` on a SQLite file; safe across threads and processes."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(f"{self.path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.Error as exc:
            raise _error(exc, self.path) from exc

    def __repr__(self) -> str:
        return f"SQLiteQueue({str(self.path)!r})"

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Cursor]:
        with self._lock, self._writer(write):
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield cur  # type: ignore[misc]  # sqlite3.Cursor satisfies the Cursor slice
                cur.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise _error(exc, self.path) from exc
            except BaseException:
                self._rollback()
                raise
            finally:
                cur.close()

    @contextmanager
    def _writer(self, write: bool) -> Iterator[None]:
        """Writers queue on a kernel lock (woken at once on release) instead of SQLite's
        busy handler, which sleeps in growing steps and wastes most of the time under
        contention between worker processes."""
        if not write:
            yield
            return
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"))

    def _merge(self, col: str, *, keep_existing: bool = False) -> str:
        return f"json_patch(?, {col})" if keep_existing else f"json_patch({col}, ?)"

    def _migrate(self) -> None:
        with self._tx() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)"
            )
            done = {r[0] for r in cur.execute("SELECT version FROM schema_version").fetchall()}
            for version, text in migrations("sqlite"):
                if version in done:
                    continue
                for stmt in iter_sql(text):
                    cur.execute(stmt)
                cur.execute("INSERT INTO schema_version VALUES (?, ?)", (version, self.clock()))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)


def migrations(dialect: str) -> list[tuple[int, str]]:
    """(version, SQL) pairs for a dialect, in order."""
    folder = resources.files("nomad.queue.migrations") / dialect
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(out)


def _error(exc: sqlite3.Error, path: Path) -> QueueError:
    return QueueError(
        f"SQLite queue {path}: {exc}",
        hint="check the data dir is writable and not on a network filesystem",
    )
