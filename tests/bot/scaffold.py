"""Test scaffolding used until the real pieces are importable.

``MemoryQueue``: an in-memory ``JobQueue`` with the interface's invariants
(client_key idempotence, per-user limits raising LimitExceeded, positions,
state documents). ``StandInWorkflows``: workflows with the binding contract
(params with min/max/choices, ``bind`` raising WorkflowError). The fixtures
prefer the real ``nomad.queue.open_queue`` / ``nomad.workflows.load_workflow``
when they exist.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from nomad.errors import JobNotFound, LimitExceeded, WorkflowError
from nomad.queue.base import Job, JobQueue, JobStatus

_WAITING = (JobStatus.QUEUED, JobStatus.WAKING)


class MemoryQueue(JobQueue):
    """In-memory JobQueue (scaffolding; not durable)."""

    def __init__(self, *, in_flight: int | None = 2, per_day: int | None = 100) -> None:
        self.jobs: dict[str, Job] = {}
        self.state: dict[tuple[str, str], dict[str, Any]] = {}
        self.in_flight, self.per_day = in_flight, per_day
        self._lock = threading.Lock()

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
        with self._lock:
            for job in self.jobs.values():
                if client_key and job.client_key == client_key:
                    return replace(job)
            now = time.time()
            if user is not None:
                self._check_limits(user, now)
            job = Job(
                id=uuid.uuid4().hex,
                workflow=workflow,
                params=dict(params),
                inputs=dict(inputs or {}),
                front_door=front_door,
                user=user,
                chat=chat,
                client_key=client_key,
                max_attempts=max_attempts or 3,
                meta=dict(meta or {}),
                times={"queued_at": now},
            )
            self.jobs[job.id] = job
            return replace(job)

    def _check_limits(self, user: str, now: float) -> None:
        mine = [j for j in self.jobs.values() if j.user == user]
        flying = [j for j in mine if not j.status.finished]
        if self.in_flight is not None and len(flying) >= self.in_flight:
            raise LimitExceeded(
                f"you already have {len(flying)} jobs in flight (limit {self.in_flight})"
            )
        midnight = now - now % 86400
        today = [j for j in mine if j.times["queued_at"] >= midnight]
        if self.per_day is not None and len(today) >= self.per_day:
            raise LimitExceeded(
                f"you reached today's limit of {self.per_day} jobs", resets_at=midnight + 86400
            )

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self.jobs:
                raise JobNotFound(f"no job {job_id}")
            return replace(self.jobs[job_id])

    def list(
        self, *, status: list[JobStatus] | None = None, user: str | None = None, limit: int = 50
    ) -> list[Job]:
        with self._lock:
            jobs = [
                replace(j)
                for j in self.jobs.values()
                if (status is None or j.status in status) and (user is None or j.user == user)
            ]
        return sorted(jobs, key=lambda j: -j.times["queued_at"])[:limit]

    def lease(self, worker: str, *, lease_seconds: float | None = None) -> Job | None:
        with self._lock:
            for job in sorted(self.jobs.values(), key=lambda j: j.times["queued_at"]):
                if job.status in _WAITING:
                    job.status, job.worker = JobStatus.RUNNING, worker
                    job.lease_token, job.attempts = uuid.uuid4().hex, job.attempts + 1
                    job.times["started_at"] = time.time()
                    return replace(job)
        return None

    def heartbeat(self, job_id: str, lease_token: str, *, progress: float | None = None) -> bool:
        with self._lock:
            job = self.jobs[job_id]
            if job.lease_token != lease_token or job.status is not JobStatus.RUNNING:
                return False
            job.progress = progress
            return True

    def complete(
        self,
        job_id: str,
        lease_token: str,
        *,
        outputs: list[str],
        gpu: str | None = None,
        cost: float | None = None,
        times: dict[str, float] | None = None,
    ) -> bool:
        with self._lock:
            job = self.jobs[job_id]
            if job.lease_token != lease_token:
                return False
            job.status, job.outputs, job.cost = JobStatus.SUCCEEDED, list(outputs), cost
            job.times.update(times or {})
            job.times["finished_at"] = time.time()
            return True

    def fail(self, job_id: str, lease_token: str, error: str, *, retry: bool = True) -> Job:
        with self._lock:
            job = self.jobs[job_id]
            job.error = error
            job.status = (
                JobStatus.QUEUED if retry and job.attempts < job.max_attempts else JobStatus.FAILED
            )
            return replace(job)

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs[job_id]
            if not job.status.finished:
                job.status = JobStatus.CANCELLED
            return replace(job)

    def requeue_running(self, *, cluster: str | None = None, reason: str = "") -> int:
        return 0

    def set_status(
        self,
        job_ids: list[str],
        status: JobStatus,
        *,
        detail: str | None = None,
        times: dict[str, float] | None = None,
    ) -> None:
        with self._lock:
            for i in job_ids:
                self.jobs[i].status, self.jobs[i].detail = status, detail

    def counts(self) -> dict[JobStatus, int]:
        out = dict.fromkeys(JobStatus, 0)
        for job in self.jobs.values():
            out[job.status] += 1
        return out

    def wait_for_work(self, timeout: float) -> bool:
        return True

    def position(self, job_id: str) -> int | None:
        with self._lock:
            waiting = sorted(
                (j for j in self.jobs.values() if j.status in _WAITING),
                key=lambda j: j.times["queued_at"],
            )
        ids = [j.id for j in waiting]
        return ids.index(job_id) + 1 if job_id in ids else None

    def stats_since(self, since: float) -> dict[str, float]:
        jobs = [j for j in self.jobs.values() if j.times["queued_at"] >= since]
        return {
            "jobs": len(jobs),
            "succeeded": sum(j.status is JobStatus.SUCCEEDED for j in jobs),
            "failed": sum(j.status is JobStatus.FAILED for j in jobs),
            "cancelled": sum(j.status is JobStatus.CANCELLED for j in jobs),
            "cost": sum(j.cost or 0.0 for j in jobs),
        }

    def get_state(self, scope: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self.state.get((scope, key))
            return dict(doc) if doc is not None else None

    def put_state(self, scope: str, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self.state[(scope, key)] = dict(value)

    def close(self) -> None:
        pass


@dataclass
class Spec:
    """A parameter binding: type, bounds, choices, default."""

    type: str = "int"
    min: float | None = None
    max: float | None = None
    choices: list[str] | None = None
    default: Any = None


@dataclass
class StandInWorkflow:
    """A workflow with the binding contract and no graph."""

    name: str
    params: dict[str, Spec] = field(default_factory=dict)
    output_kind: str = "image"
    image_inputs: list[str] = field(default_factory=list)

    def bind(self, values: dict[str, Any], images: dict[str, bytes] | None = None) -> Any:
        for key, value in values.items():
            spec = self.params.get(key)
            if spec is None:
                raise WorkflowError(
                    f"{self.name} has no option --{key}",
                    hint=f"options: {', '.join('--' + p for p in self.params)}",
                )
            if spec.choices is not None and value not in spec.choices:
                raise WorkflowError(f"--{key} must be one of {', '.join(spec.choices)}")
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and (
                    (spec.min is not None and value < spec.min)
                    or (spec.max is not None and value > spec.max)
                )
            ):
                raise WorkflowError(f"--{key} {value} is out of range ({spec.min}–{spec.max})")
        for name in self.image_inputs:
            if not images or name not in images:
                raise WorkflowError(f"{self.name} needs an input image")
        return {"values": values}


class StandInWorkflows:
    """``load_workflow`` for the stand-ins."""

    def __init__(self) -> None:
        common = {
            "prompt": Spec("str"),
            "seed": Spec("int", 0, 2**32 - 1),
            "steps": Spec("int", 1, 50),
        }
        self.known = {
            "flux_schnell": StandInWorkflow(
                "flux_schnell", {**common, "ar": Spec("str", choices=["1:1", "16:9", "9:16"])}
            ),
            "flux_dev": StandInWorkflow("flux_dev", dict(common)),
            "sd35_large": StandInWorkflow("sd35_large", dict(common)),
            "qwen_image_edit": StandInWorkflow(
                "qwen_image_edit", {**common, "image": Spec("image")}, image_inputs=["image"]
            ),
            "wan22_t2v": StandInWorkflow("wan22_t2v", dict(common), output_kind="video"),
        }

    def __call__(self, name: str) -> StandInWorkflow:
        if name not in self.known:
            raise WorkflowError(f"unknown workflow {name!r}")
        return self.known[name]
