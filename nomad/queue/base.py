"""The queue seam: one ``JobQueue`` interface, a PostgreSQL and a SQLite implementation.

Both implementations pass the same test suite (tests/queue/). The interface is
synchronous on purpose: psycopg and sqlite3 are both blocking-first; asyncio
callers (workers, the bot) call through ``asyncio.to_thread``.

Invariants every implementation keeps:
- enqueue is idempotent on ``client_key`` (same key ⇒ same job, no new row);
- a job is leased to at most one worker at a time; a lease that expires
  (worker killed) makes the job leasable again, ``attempts`` counts leases;
- ``complete`` is idempotent and fenced by the lease token: a stale worker
  can never overwrite a result or produce a second one;
- per-user limits (in flight, per day) are enforced inside ``enqueue``.
"""

from __future__ import annotations

import abc
import builtins
import enum
import time
from dataclasses import dataclass, field
from typing import Any

CANCEL_POLL_SECONDS = 0.25  # wait_for_cancel's poll where the database cannot notify


class JobStatus(str, enum.Enum):  # noqa: UP042 - (str, Enum) keeps DB/JSON values stable
    """Closed set of job states."""

    QUEUED = "queued"
    WAKING = "waking"  # queued, and a cluster is being brought up for it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


# Phase timestamps recorded on a job (unix seconds), in order.
PHASES = (
    "queued_at",
    "cluster_requested_at",
    "cluster_ready_at",
    "started_at",  # leased by a worker
    "uploaded_at",  # inputs uploaded to ComfyUI
    "executing_at",  # ComfyUI began executing (after queue wait)
    "executed_at",  # ComfyUI finished
    "finished_at",  # outputs stored; job done
)


@dataclass
class Job:
    """One unit of work from any front door."""

    id: str
    workflow: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)  # param name -> storage key of an input file
    status: JobStatus = JobStatus.QUEUED
    front_door: str = "cli"  # cli | telegram | web | batch
    user: str | None = None  # front-door user reference (e.g. telegram user id)
    chat: str | None = None  # where to deliver (e.g. telegram chat id / message id)
    client_key: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    error: str | None = None
    outputs: list[str] = field(default_factory=list)  # storage keys
    times: dict[str, float] = field(default_factory=dict)  # PHASES -> unix seconds
    gpu: str | None = None
    cluster: str | None = None
    cost: float | None = None  # USD
    progress: float | None = None  # 0..1 while running
    detail: str | None = None  # human status line (e.g. "waiting: daily budget reached")
    lease_token: str | None = None
    lease_expires_at: float | None = None
    worker: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class JobQueue(abc.ABC):
    """Durable job queue. See module docstring for the invariants."""

    @abc.abstractmethod
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
        """Add a job (or return the existing one with the same client_key).

        Raises ``LimitExceeded`` when the user's quota refuses it.
        """

    @abc.abstractmethod
    def get(self, job_id: str) -> Job:
        """The job, or ``JobNotFound``."""

    @abc.abstractmethod
    def list(
        self,
        *,
        status: list[JobStatus] | None = None,
        user: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first."""

    @abc.abstractmethod
    def lease(
        self, worker: str, *, lease_seconds: float | None = None, cluster: str | None = None
    ) -> Job | None:
        """Atomically take the oldest leasable job (queued/waking, or running with an expired lease).

        ``cluster`` stamps the job so a lost cluster's jobs can be requeued.
        """

    @abc.abstractmethod
    def heartbeat(self, job_id: str, lease_token: str, *, progress: float | None = None) -> bool:
        """Extend the lease; False if the lease was lost (stop working on it)."""

    @abc.abstractmethod
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
        """Mark succeeded; idempotent; False if the token is stale (result discarded)."""

    @abc.abstractmethod
    def fail(self, job_id: str, lease_token: str, error: str, *, retry: bool = True) -> Job:
        """Record a failure; requeue if retry and attempts remain, else FAILED."""

    @abc.abstractmethod
    def release(self, job_id: str, lease_token: str, reason: str = "") -> bool:
        """Give a running job back unharmed: queued again, its attempt refunded; fenced by the
        token (False when stale). For failures that are not the job's fault: shutdown, a crashed
        or lost ComfyUI, storage or the queue down for too long."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (workers see it through :meth:`wait_for_cancel`)."""

    def wait_for_cancel(self, job_ids: builtins.list[str], timeout: float) -> builtins.list[str]:
        """Those of ``job_ids`` that are cancelled, waiting up to ``timeout`` s for one to be.

        Lets a worker stop a cancelled run within a second instead of at its
        next heartbeat. This default polls; PostgreSQL overrides it with
        LISTEN/NOTIFY.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            found = [j for j in job_ids if self.get(j).status is JobStatus.CANCELLED]
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            time.sleep(min(CANCEL_POLL_SECONDS, left))

    @abc.abstractmethod
    def requeue_running(self, *, cluster: str | None = None, reason: str = "") -> int:
        """Put running jobs (of one cluster, or all) back in the queue; returns how many."""

    @abc.abstractmethod
    def set_status(self, job_ids: builtins.list[str], status: JobStatus, *, detail: str | None = None,
                   times: dict[str, float] | None = None) -> None:
        """Autoscaler annotations on waiting jobs (waking, detail, cluster timestamps)."""

    @abc.abstractmethod
    def counts(self) -> dict[JobStatus, int]:
        """Jobs per status (queue depth for status surfaces)."""

    @abc.abstractmethod
    def wait_for_work(self, timeout: float) -> bool:
        """Block until a job may be available (LISTEN/NOTIFY, or a bounded poll); True if woken."""

    @abc.abstractmethod
    def position(self, job_id: str) -> int | None:
        """1-based place among waiting jobs (None when not waiting)."""

    @abc.abstractmethod
    def stats_since(self, since: float) -> dict[str, float]:
        """Totals since a time: jobs, succeeded, failed, cancelled, cost (USD)."""

    @abc.abstractmethod
    def get_state(self, scope: str, key: str) -> dict[str, Any] | None:
        """Small JSON documents kept in the same database (bot sessions, autoscaler state)."""

    @abc.abstractmethod
    def put_state(self, scope: str, key: str, value: dict[str, Any]) -> None:
        """Upsert a JSON document under (scope, key)."""

    @abc.abstractmethod
    def claim_state(
        self, scope: str, key: str, value: dict[str, Any], *, stale_after: float
    ) -> bool:
        """Atomically create (scope, key) unless a document younger than ``stale_after`` exists."""

    @abc.abstractmethod
    def delete_state(self, scope: str, key: str) -> None:
        """Remove (scope, key); missing is fine."""

    @abc.abstractmethod
    def close(self) -> None: ...
