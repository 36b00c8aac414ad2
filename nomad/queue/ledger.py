"""The cluster ledger: every cluster nomad may be paying for, from the launch call to teardown.

One row per launch attempt, in the queue's database (PostgreSQL or SQLite, the
same SQL), per project. The rules every writer keeps (``nomad up``, the
autoscaler, the bot's admin commands, batch — they all go through
:mod:`nomad.launch`):

- the row is written **before** the backend's launch call (state ``launching``,
  with the offer, its price and who asked), so a crash mid-launch still leaves
  a record someone will reconcile;
- it moves to ``up`` once every endpoint answered, ``failed`` when the launch
  failed (teardown pending), ``lost`` when the provider lost it, ``stopping``
  while a teardown is in flight;
- it is **closed** (``gone``) only when the backend confirmed the cluster is
  gone (a teardown that returned and a status that says GONE). A failed
  teardown leaves the row open, and every later ``nomad status``/``down``/
  ``serve`` start retries it.

Spend accrues from the rows: ``price_per_hour`` over ``[started_at, ended_at)``
(``now`` while open), counted in started minutes. A cluster that autostopped or
that the provider removed keeps its row, so its money never drops out of the
day's total (see docs/lifecycle.md).
"""

from __future__ import annotations

import enum
import math
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad.backends.base import Offer
from nomad.errors import BackendError
from nomad.queue._sql import SqlQueue, _loads

if TYPE_CHECKING:
    from nomad.config.schema import NomadConfig

DAY = 86400.0
REQUESTERS = ("up", "autoscaler", "bot", "batch")


class LedgerState(enum.StrEnum):
    """Closed set of ledger row states (only ``gone`` is closed)."""

    LAUNCHING = "launching"  # row written, launch call in flight (or its process died)
    UP = "up"  # every endpoint answered /system_stats
    FAILED = "failed"  # the launch failed; teardown not yet confirmed
    LOST = "lost"  # the provider lost it (preempted, failed, vanished); teardown pending
    STOPPING = "stopping"  # a teardown was asked for; not yet confirmed
    GONE = "gone"  # the backend confirmed it is gone: closed


class LedgerConflict(BackendError):
    """A cluster of that name is still open in the ledger (it may exist and bill)."""


@dataclass
class LedgerRow:
    """One launch attempt of one cluster."""

    id: str
    project: str
    name: str
    backend: str
    state: LedgerState
    requested_by: str
    offer: Offer | None
    price_per_hour: float
    started_at: float
    updated_at: float
    up_at: float | None = None
    ended_at: float | None = None
    closed_at: float | None = None
    endpoints: list[str] = field(default_factory=list)
    owner: str | None = None
    detail: str | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def cost(self, since: float, until: float) -> float:
        """USD between ``since`` and ``until`` (clipped to the row's life), in started minutes."""
        end = self.ended_at if self.ended_at is not None else until
        seconds = min(end, until) - max(self.started_at, since)
        if seconds <= 0:
            return 0.0
        return self.price_per_hour * math.ceil(seconds / 60.0 - 1e-9) / 60.0

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "name": self.name,
            "backend": self.backend,
            "state": self.state.value,
            "requested_by": self.requested_by,
            "offer": self.offer.to_json() if self.offer else None,
            "price_per_hour": self.price_per_hour,
            "endpoints": list(self.endpoints),
            "owner": self.owner,
            "detail": self.detail,
            "started_at": self.started_at,
            "up_at": self.up_at,
            "ended_at": self.ended_at,
            "closed_at": self.closed_at,
            "spend_usd": round(self.cost(self.started_at, now), 4),
        }


def me() -> str:
    """This process as a ledger owner / lease holder: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


_COLS = (
    "id, project, name, backend, state, requested_by, offer, price_per_hour, started_at, "
    "updated_at, up_at, ended_at, closed_at, endpoints, owner, detail"
)


class ClusterLedger:
    """Typed access to the ``clusters`` table of one project (see the module docstring)."""

    def __init__(
        self,
        queue: SqlQueue,
        project: str,
        *,
        clock: Callable[[], float] = time.time,
        owns_queue: bool = False,
    ) -> None:
        self.queue, self.project, self.clock = queue, project, clock
        self._owns = owns_queue

    def close(self) -> None:
        """Close the queue when this ledger opened it."""
        if self._owns:
            self.queue.close()

    # -- writes ------------------------------------------------------------------------

    def intend(
        self,
        name: str,
        backend: str,
        requested_by: str,
        offer: Offer | None,
        *,
        price_per_hour: float | None = None,
        owner: str | None = None,
    ) -> LedgerRow:
        """Record a launch about to happen; refuses when ``name`` still has an open row."""
        if requested_by not in REQUESTERS:
            raise ValueError(f"requested_by must be one of {REQUESTERS}")
        now = self.clock()
        price = (
            price_per_hour
            if price_per_hour is not None
            else (offer.price_per_hour if offer else 0.0)
        )
        q = self.queue
        with q._tx() as cur:
            found = q._exec(
                cur,
                "SELECT id, state, owner FROM clusters WHERE project = ? AND name = ? AND closed_at IS NULL",
                (self.project, name),
            ).fetchone()
            if found is not None:
                raise LedgerConflict(
                    f"cluster {name!r} is still open in the ledger ({found[1]}, by {found[2] or '?'})",
                    hint=f"`nomad down {name}` confirms it is gone first (or see `nomad status`)",
                )
            row = q._exec(
                cur,
                f"""INSERT INTO clusters (id, project, name, backend, state, requested_by, offer,
                price_per_hour, started_at, updated_at, owner, endpoints)
                VALUES (?, ?, ?, ?, 'launching', ?, ?, ?, ?, ?, ?, ?) RETURNING {_COLS}""",
                (
                    secrets.token_hex(6),
                    self.project,
                    name,
                    backend,
                    requested_by,
                    q._json(offer.to_json()) if offer else None,
                    float(price),
                    now,
                    now,
                    owner or me(),
                    q._json([]),
                ),
            ).fetchone()
        return _row(row)

    def provisioned(
        self, row_id: str, endpoints: Iterable[str], price_per_hour: float | None
    ) -> None:
        """The backend returned: endpoints known (health not yet checked), price confirmed."""
        q = self.queue
        with q._tx() as cur:
            q._exec(
                cur,
                """UPDATE clusters SET endpoints = ?, updated_at = ?,
                price_per_hour = CASE WHEN ? > 0 THEN ? ELSE price_per_hour END
                WHERE id = ? AND closed_at IS NULL""",
                (
                    q._json(list(endpoints)),
                    self.clock(),
                    price_per_hour or 0.0,
                    price_per_hour or 0.0,
                    row_id,
                ),
            )

    def mark_up(
        self, row_id: str, endpoints: Iterable[str], price_per_hour: float | None = None
    ) -> None:
        """Every endpoint answered: the cluster serves."""
        self.provisioned(row_id, endpoints, price_per_hour)
        now = self.clock()
        with self.queue._tx() as cur:
            self.queue._exec(
                cur,
                """UPDATE clusters SET state = 'up', up_at = COALESCE(up_at, ?), detail = NULL,
                updated_at = ? WHERE id = ? AND closed_at IS NULL""",
                (now, now, row_id),
            )

    def mark(self, row_id: str, state: LedgerState, detail: str | None = None) -> None:
        """Move an open row to launching/up/failed/lost/stopping (closing is :meth:`confirm_gone`)."""
        if state is LedgerState.GONE:
            raise ValueError(
                "close a row with ClusterLedger.confirm_gone (it needs the backend's word)"
            )
        with self.queue._tx() as cur:
            self.queue._exec(
                cur,
                """UPDATE clusters SET state = ?, detail = COALESCE(?, detail), updated_at = ?
                WHERE id = ? AND closed_at IS NULL""",
                (state.value, detail[:2000] if detail else None, self.clock(), row_id),
            )

    def claim(self, row_id: str, owner: str | None = None) -> None:
        """Take a row over (serve adopting a cluster): it is ours to watch and tear down."""
        with self.queue._tx() as cur:
            self.queue._exec(
                cur,
                "UPDATE clusters SET owner = ?, updated_at = ? WHERE id = ? AND closed_at IS NULL",
                (owner or me(), self.clock(), row_id),
            )

    def confirm_gone(
        self, row_id: str, detail: str | None = None, *, ended_at: float | None = None
    ) -> None:
        """The backend confirmed the cluster is gone: stop the spend clock and close the row."""
        now = self.clock()
        with self.queue._tx() as cur:
            self.queue._exec(
                cur,
                """UPDATE clusters SET state = 'gone', closed_at = ?, ended_at = COALESCE(ended_at, ?),
                detail = COALESCE(?, detail), updated_at = ? WHERE id = ? AND closed_at IS NULL""",
                (now, ended_at if ended_at is not None else now, detail, now, row_id),
            )

    # -- reads -------------------------------------------------------------------------

    def get(self, row_id: str) -> LedgerRow | None:
        """One row by id (open or closed)."""
        return next(iter(self._select("id = ?", (row_id,))), None)

    def open_rows(self) -> list[LedgerRow]:
        """Every cluster of the project that may still exist, oldest first."""
        return self._select("project = ? AND closed_at IS NULL", (self.project,))

    def find_open(self, name: str) -> LedgerRow | None:
        """The open row of ``name``, if any."""
        rows = self._select("project = ? AND name = ? AND closed_at IS NULL", (self.project, name))
        return rows[0] if rows else None

    def last(self, name: str) -> LedgerRow | None:
        """The newest row of ``name``, open or closed (what happened on its last launch)."""
        rows = self._select(
            "seq = (SELECT MAX(seq) FROM clusters WHERE project = ? AND name = ?)",
            (self.project, name),
        )
        return rows[0] if rows else None

    def rows_since(self, since: float) -> list[LedgerRow]:
        """Rows open now or that ended after ``since`` (what today's spend is made of)."""
        return self._select(
            "project = ? AND (closed_at IS NULL OR ended_at >= ?)", (self.project, since)
        )

    def spend_since(self, since: float, now: float | None = None) -> float:
        """USD since ``since`` over every row, open and closed."""
        now = self.clock() if now is None else now
        return sum(r.cost(since, now) for r in self.rows_since(since))

    def spend_today(self, now: float | None = None) -> float:
        """USD since 00:00 UTC, from the ledger alone."""
        now = self.clock() if now is None else now
        return self.spend_since(now - now % DAY, now)

    def _select(self, where: str, args: tuple[Any, ...]) -> list[LedgerRow]:
        q = self.queue
        with q._tx(write=False) as cur:
            rows = q._exec(
                cur, f"SELECT {_COLS} FROM clusters WHERE {where} ORDER BY seq", args
            ).fetchall()
        return [_row(r) for r in rows]


def _row(r: Any) -> LedgerRow:
    from nomad.backends.state import offer_from_json

    offer = _loads(r[6]) if r[6] is not None else None
    return LedgerRow(
        id=r[0],
        project=r[1],
        name=r[2],
        backend=r[3],
        state=LedgerState(r[4]),
        requested_by=r[5],
        offer=offer_from_json(offer) if offer else None,
        price_per_hour=float(r[7] or 0.0),
        started_at=float(r[8]),
        updated_at=float(r[9]),
        up_at=r[10],
        ended_at=r[11],
        closed_at=r[12],
        endpoints=[str(u) for u in (_loads(r[13]) or [])],
        owner=r[14],
        detail=r[15],
    )


def open_ledger(
    cfg: NomadConfig | None,
    data_dir: str | Path,
    *,
    project: str | None = None,
    clock: Callable[[], float] = time.time,
) -> ClusterLedger:
    """The project's ledger in the configured queue database (SQLite in the data dir by default)."""
    from nomad.queue import open_queue

    queue = open_queue(cfg, data_dir)
    assert isinstance(queue, SqlQueue)
    name = project or (cfg.project if cfg is not None else "nomad")  # the config default
    return ClusterLedger(queue, name, clock=clock, owns_queue=True)


def has_database(cfg: NomadConfig | None, data_dir: str | Path) -> bool:
    """Whether a ledger could hold anything yet (a configured URL, or the embedded file exists)."""
    if cfg is not None and cfg.queue.url is not None:
        return True
    return (Path(data_dir) / "queue.db").exists()
