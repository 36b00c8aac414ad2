"""Workers: one per ComfyUI endpoint (one per GPU), pulling jobs from the queue.

Dispatch is pull-based: an endpoint asks for work only when it has none, so
the least-loaded endpoint always takes the next job and a slow GPU never
hoards a backlog. Each job runs under a lease that a heartbeat extends; a
lost lease (cancelled, or the job went to another worker) stops the run and
interrupts ComfyUI. Outputs land under stable keys, then ``complete`` —
fenced by the lease token — records them exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nomad.errors import NomadError
from nomad.queue.base import Job, JobQueue, JobStatus
from nomad.serve.eta import EtaModel
from nomad.serve.log import event
from nomad.serve.outputs import DEFAULT_PREFIX, OutputStore, output_key
from nomad.serve.runner import Runner, error_text, is_transient

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class ClusterRuntime:
    """What workers need to know about the cluster they run on (for cost and logs)."""

    name: str
    endpoints: list[str]
    price_per_hour: float = 0.0
    gpu: str | None = None
    cold_share: float = 0.0  # USD per job that waited for this cluster's wake


@dataclass
class PoolConfig:
    lease_seconds: float = 300.0
    heartbeat_seconds: float = 10.0
    retries: int = 2  # in-worker retries of transient failures before giving the job back
    backoff_seconds: float = 2.0
    idle_poll_seconds: float = 1.0
    prefix: str = DEFAULT_PREFIX


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[None]
    endpoint: str = ""
    progress: float | None = None
    shutdown: bool = False
    cancelled: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerPool:
    """All workers of one ``nomad serve``; clusters come and go via start/stop_cluster."""

    def __init__(
        self,
        queue: JobQueue,
        runner: Runner,
        store: OutputStore,
        *,
        config: PoolConfig | None = None,
        eta: EtaModel | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.queue, self.runner, self.store = queue, runner, store
        self.config = config or PoolConfig()
        self.eta = eta or EtaModel()
        self.clock, self.sleep = clock, sleep
        self.stopping = False
        self._clusters: dict[str, list[asyncio.Task[None]]] = {}
        self._running: dict[str, _Running] = {}  # worker name -> its current job
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # -- clusters ---------------------------------------------------------------------------

    def start_cluster(self, rt: ClusterRuntime) -> None:
        """One worker task per endpoint of a cluster that just became ready."""
        if rt.name in self._clusters:
            return
        self._clusters[rt.name] = [
            asyncio.create_task(self._loop(rt, url, i), name=f"worker {rt.name}#{i}")
            for i, url in enumerate(rt.endpoints)
        ]
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="work watcher")
        event("workers.start", cluster=rt.name, endpoints=len(rt.endpoints), gpu=rt.gpu)

    async def stop_cluster(self, name: str) -> None:
        """Stop a cluster's workers at once (its jobs are requeued by the caller or by lease expiry)."""
        tasks = self._clusters.pop(name, [])
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def busy(self) -> int:
        """Jobs running in this process."""
        return len(self._running)

    @property
    def workers(self) -> int:
        return sum(len(t) for t in self._clusters.values())

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, grace_seconds: float) -> None:
        """Stop leasing; let running jobs finish for ``grace_seconds``; give the rest back to the queue."""
        self.stopping = True
        self._wake.set()
        pending = [r.ended.wait() for r in self._running.values()]
        if pending:
            event("workers.draining", running=len(pending), grace_s=grace_seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_seconds):
                    await asyncio.gather(*pending)
        left = list(self._running.values())
        for r in left:  # past the grace period: stop ComfyUI too, the job goes back to the queue
            r.shutdown = True
            r.task.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await self.runner.interrupt(r.endpoint)
        if left:  # wait (bounded) for the cancelled jobs to be handed back
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await asyncio.gather(*(r.ended.wait() for r in left))
        for name in list(self._clusters):
            await self.stop_cluster(name)
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self, rt: ClusterRuntime, endpoint: str, index: int) -> None:
        name = f"{rt.name}#{index}"
        while not self.stopping:
            try:
                job = await asyncio.to_thread(
                    self.queue.lease, name, cluster=rt.name, lease_seconds=self.config.lease_seconds
                )
            except NomadError as exc:
                event("worker.lease_failed", level=logging.WARNING, worker=name, error=exc.message)
                await self.sleep(self.config.backoff_seconds)
                continue
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.idle_poll_seconds):
                        await self._wake.wait()
                continue
            await self._process(rt, endpoint, name, job)

    async def _watch(self) -> None:
        """One thread blocks on the queue's wake-up (NOTIFY or a bounded poll) for every idle worker."""
        while not self.stopping:
            try:
                woke = await asyncio.to_thread(
                    self.queue.wait_for_work, self.config.idle_poll_seconds
                )
            except NomadError:
                woke = False
                await self.sleep(self.config.idle_poll_seconds)
            if woke:
                self._wake.set()
                await self.sleep(0.05)  # let idle workers lease before looking again

    async def _process(self, rt: ClusterRuntime, endpoint: str, name: str, job: Job) -> None:
        run = _Running(job, asyncio.current_task(), endpoint)  # type: ignore[arg-type]
        inner = asyncio.create_task(self._attempts(rt, endpoint, name, run))
        run.task = inner
        self._running[name] = run
        beat = asyncio.create_task(self._heartbeat(endpoint, run))
        event("job.start", job=job.id, worker=name, workflow=job.workflow, attempt=job.attempts)
        try:
            await asyncio.wait({inner})
            if run.shutdown:  # fenced: a job that completed meanwhile stays completed
                await self._release(job, "requeued: nomad serve shut down")
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._running.pop(name, None)
            run.ended.set()

    async def _heartbeat(self, endpoint: str, run: _Running) -> None:
        job, token = run.job, run.job.lease_token or ""
        while True:
            await self.sleep(self.config.heartbeat_seconds)
            try:
                ok = await asyncio.to_thread(
                    self.queue.heartbeat, job.id, token, progress=run.progress
                )
            except NomadError:
                continue  # the lease may still be valid; try again next beat
            if ok:
                continue
            current = await asyncio.to_thread(self.queue.get, job.id)
            run.cancelled = current.status is JobStatus.CANCELLED
            event("job.lease_lost", job=job.id, status=current.status.value)
            run.task.cancel()
            if run.cancelled:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(15):
                        await self.runner.interrupt(endpoint)
            return

    async def _attempts(self, rt: ClusterRuntime, endpoint: str, name: str, run: _Running) -> None:
        job, cfg = run.job, self.config

        def progress(value: float) -> None:
            run.progress = max(0.0, min(1.0, value))

        for attempt in range(cfg.retries + 1):
            try:
                report = await self.runner.run(job, endpoint, progress)
                keys = [
                    output_key(job.id, i, o.ext, cfg.prefix) for i, o in enumerate(report.outputs)
                ]
                for key, out in zip(keys, report.outputs, strict=True):
                    await asyncio.to_thread(self.store.put, key, out.data)
                await self._complete(rt, name, job, keys, report.times)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if run.shutdown or run.cancelled:
                    return  # the interrupt we asked for; the job is requeued or cancelled
                transient = is_transient(exc)
                event(
                    "job.error",
                    level=logging.WARNING,
                    job=job.id,
                    worker=name,
                    transient=transient,
                    error=error_text(exc),
                )
                if transient and attempt < cfg.retries:
                    await self.sleep(cfg.backoff_seconds * 2**attempt)
                    continue
                await self._fail(job, error_text(exc), retry=transient)
                return

    async def _complete(
        self, rt: ClusterRuntime, name: str, job: Job, keys: list[str], times: dict[str, float]
    ) -> None:
        now = self.clock()
        started = job.times.get("started_at", now)
        cost = rt.price_per_hour * max(0.0, now - started) / 3600.0
        if "cluster_requested_at" in job.times:
            cost += rt.cold_share
        stamps = {**times, "finished_at": now}
        ok = await asyncio.to_thread(
            self.queue.complete,
            job.id,
            job.lease_token or "",
            outputs=keys,
            gpu=rt.gpu,
            cost=round(cost, 6),
            times=stamps,
        )
        if ok:
            self.eta.add_run(job.workflow, rt.gpu, now - started)
        event(
            "job.done" if ok else "job.stale",
            job=job.id,
            worker=name,
            outputs=len(keys),
            seconds=now - started,
            cost=cost,
        )

    async def _fail(self, job: Job, error: str, *, retry: bool) -> None:
        try:
            after = await asyncio.to_thread(
                self.queue.fail, job.id, job.lease_token or "", error, retry=retry
            )
            event("job.failed", job=job.id, status=after.status.value, error=error)
        except NomadError as exc:
            event("job.fail_unrecorded", level=logging.WARNING, job=job.id, error=exc.message)

    async def _release(self, job: Job, reason: str) -> None:
        release: Any = getattr(self.queue, "release", None)
        try:
            if release is not None:
                await asyncio.to_thread(release, job.id, job.lease_token or "", reason)
            else:
                await asyncio.to_thread(self.queue.fail, job.id, job.lease_token or "", reason)
            event("job.released", job=job.id)
        except NomadError as exc:
            event("job.release_failed", level=logging.WARNING, job=job.id, error=exc.message)
