"""Leader leases in the queue's database: one ``nomad serve`` per project.

Two serves on one project would each adopt the other's clusters and tear them
down under it. So serve takes the ``serve`` lease of its project before it
starts anything, renews it every ``ttl / 3`` seconds, and gives it back on
exit. A second serve sees the holder (host, pid, since) and refuses, or waits
as a standby. A holder that stops renewing (SIGKILL, a lost host) loses the
lease after ``ttl`` seconds; one on this host whose pid is gone loses it at
once. One upsert does the taking, so two starters can never both win.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from nomad.errors import NomadError
from nomad.osutil import pid_alive
from nomad.queue._sql import SqlQueue

DEFAULT_TTL = 30.0


class LeaseHeld(NomadError):
    """Another process holds the lease (e.g. a second ``nomad serve`` on one project)."""

    exit_code = 1


@dataclass(frozen=True)
class Holder:
    """Who holds a lease."""

    holder: str
    host: str
    pid: int
    since: float
    expires_at: float

    def describe(self) -> str:
        since = dt.datetime.fromtimestamp(self.since, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"host {self.host}, pid {self.pid}, since {since}"


class LeaderLease:
    """The ``name`` lease of ``project``; this process is ``holder`` (host:pid:random)."""

    def __init__(
        self,
        queue: SqlQueue,
        project: str,
        name: str = "serve",
        *,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue, self.project, self.name, self.ttl, self.clock = queue, project, name, ttl, clock
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.holder = f"{self.host}:{self.pid}:{os.urandom(3).hex()}"

    def try_acquire(self) -> Holder | None:
        """Take the lease if free, expired or ours; else return who holds it."""
        current = self._take()
        if current is None:
            return None
        if current.host == self.host and not pid_alive(current.pid):
            return self._take(stale=current.holder)  # its process is gone: no TTL to wait out
        return current

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseHeld` naming the holder."""
        held = self.try_acquire()
        if held is not None:
            raise LeaseHeld(
                f"nomad serve is already running for project {self.project!r} ({held.describe()})",
                hint="stop that one first, or start this one with --standby to take over when it exits",
            )

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (someone took it after it expired)."""
        q = self.queue
        with q._tx() as cur:
            n = q._exec(
                cur,
                "UPDATE leases SET expires_at = ? WHERE project = ? AND name = ? AND holder = ?",
                (self.clock() + self.ttl, self.project, self.name, self.holder),
            ).rowcount
        return n == 1

    def release(self) -> None:
        """Give the lease back (a standby takes it at its next try)."""
        q = self.queue
        with q._tx() as cur:
            q._exec(
                cur,
                "DELETE FROM leases WHERE project = ? AND name = ? AND holder = ?",
                (self.project, self.name, self.holder),
            )

    def current(self) -> Holder | None:
        """The holder now, if any (expired or not)."""
        q = self.queue
        with q._tx(write=False) as cur:
            row = q._exec(
                cur,
                "SELECT holder, host, pid, since, expires_at FROM leases WHERE project = ? AND name = ?",
                (self.project, self.name),
            ).fetchone()
        return Holder(row[0], row[1], int(row[2]), float(row[3]), float(row[4])) if row else None

    def _take(self, stale: str | None = None) -> Holder | None:
        """One upsert: ours if the row is missing, expired, ours already (or ``stale``'s)."""
        now = self.clock()
        q = self.queue
        with q._tx() as cur:
            row = q._exec(
                cur,
                """INSERT INTO leases (project, name, holder, host, pid, since, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (project, name) DO UPDATE SET holder = excluded.holder,
                    host = excluded.host, pid = excluded.pid, expires_at = excluded.expires_at,
                    since = CASE WHEN leases.holder = excluded.holder THEN leases.since
                                 ELSE excluded.since END
                WHERE leases.expires_at < ? OR leases.holder = excluded.holder OR leases.holder = ?
                RETURNING holder""",
                (
                    self.project,
                    self.name,
                    self.holder,
                    self.host,
                    self.pid,
                    now,
                    now + self.ttl,
                    now,
                    stale or "",
                ),
            ).fetchone()
        if row is not None:
            return None
        return self.current()


