"""Workers: one per ComfyUI endpoint (one per GPU), pulling jobs from the queue.

Dispatch is pull-based: an endpoint asks for work only when it has none, so
the least-loaded endpoint always takes the next job and a slow GPU never
hoards a backlog. Each job runs under a lease that a heartbeat extends; a
lost lease (cancelled, or the job went to another worker) stops the run and
interrupts ComfyUI. Outputs land under stable keys, then ``complete`` —
fenced by the lease token — records them exactly once.

Attempts belong to the job, not to the infrastructure (see
:func:`nomad.serve.runner.failure_kind`): a job whose graph fails spends an
attempt; storage or the queue being down makes the job wait with backoff
under its lease, and an endpoint that crashed or stopped answering hands the
job back without charging it. Stopping a cluster stops its workers' runs at
once and gives their jobs back, so a stale run never reaches the next cluster
that happens to use the same ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
from nomad.serve.runner import Runner, RunReport, error_text, failure_kind

Sleep = Callable[[float], Awaitable[None]]
ABORT_SECONDS = 3.0  # stopping a run: how long to wait for it, and for ComfyUI's /interrupt
SETTLE_TRIES = (
    3  # fail/release calls tried this often (backoff between) before leaving it to the lease
)


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
    retries: int = 2  # in-place retries of an endpoint failure before handing the job back
    backoff_seconds: float = 2.0  # first wait after a failure; doubles up to max_backoff_seconds
    max_backoff_seconds: float = 30.0
    infra_wait_seconds: float = 900.0  # storage/queue down: keep the lease and retry this long
    idle_poll_seconds: float = 1.0
    health_fresh_seconds: float = 30.0  # an endpoint not seen healthy this long is probed first
    cancel_wait_seconds: float = 1.0  # one wait_for_cancel call (NOTIFY or a 0.25 s poll inside)
    prefix: str = DEFAULT_PREFIX

    def backoff(self, tries: int) -> float:
        """Seconds to wait before try number ``tries`` + 1 (exponential, capped)."""
        return float(min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(0, tries)))


class _GiveBack(Exception):
    """Stop this run and hand the job back to the queue without charging an attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Running:
    job: Job
    task: asyncio.Task[None]
    endpoint: str = ""
    progress: float | None = None
    shutdown: bool = False
    cancelled: bool = False
    sick: bool = False  # handed back: back off, and wait for the endpoint to answer, before leasing
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
        self._seen_ok: dict[str, float] = {}  # endpoint -> last time it answered (run or probe)
        self._wake = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # a run began: the cancel watcher has something to watch
        self._cancel_watcher: asyncio.Task[None] | None = None

    # -- clusters ---------------------------------------------------------------------------

    def start_cluster(self, rt: ClusterRuntime) -> None:
        """One worker task per endpoint of a cluster that just became ready."""
        if rt.name in self._clusters:
            return
        forget = getattr(self.runner, "forget_endpoints", None)
        if forget is not None:  # a new wake: the runner re-reads each server's schema once
            forget(list(rt.endpoints))
        self._clusters[rt.name] = [
            asyncio.create_task(self._loop(rt, url, i), name=f"worker {rt.name}#{i}")
            for i, url in enumerate(rt.endpoints)
        ]
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="work watcher")
        if self._cancel_watcher is None:
            self._cancel_watcher = asyncio.create_task(self._watch_cancels(), name="cancel watcher")
        event("workers.start", cluster=rt.name, endpoints=len(rt.endpoints), gpu=rt.gpu)

    async def stop_cluster(self, name: str) -> None:
        """Stop a cluster's workers at once: runs in flight are cancelled, ComfyUI is asked to
        interrupt (bounded), and their jobs go back to the queue without losing an attempt."""
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
        for watcher in (self._watcher, self._cancel_watcher):
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    # -- the loop ------------------------------------------------------------------------------

    async def _loop(self, rt: ClusterRuntime, endpoint: str, index: int) -> None:
        name = f"{rt.name}#{index}"
        failures, sick = 0, False
        while not self.stopping:
            if sick:
                await self._until_healthy(endpoint, name)
                sick = False
                continue
            try:
                job = await self._lease(rt, name)
            except NomadError as exc:  # the queue is unreachable: back off, lose nothing
                event("worker.lease_failed", level=logging.WARNING, worker=name, error=exc.message)
                await self.sleep(self.config.backoff(failures))
                failures += 1
                continue
            failures = 0
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.idle_poll_seconds):
                        await self._wake.wait()
                continue
            if self.stopping:  # shutdown began while this lease was being taken
                await self._release(job, "requeued: nomad serve shut down")
                break
            sick = await self._dispatch(rt, endpoint, name, job)

    async def _lease(self, rt: ClusterRuntime, name: str) -> Job | None:
        """One lease, in a thread. If this worker is cancelled meanwhile (shutdown, a stopped
        cluster), the thread still commits its lease: that job is handed back, not left leased
        until its lease expires (which would cost it an attempt)."""
        taking = asyncio.ensure_future(
            asyncio.to_thread(
                self.queue.lease, name, cluster=rt.name, lease_seconds=self.config.lease_seconds
            )
        )
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(30):
                    late = await taking
                if late is not None:
                    await self._release(late, "requeued: nomad serve shut down")
            raise

    async def _dispatch(self, rt: ClusterRuntime, endpoint: str, name: str, job: Job) -> bool:
        """Run a leased job, unless its endpoint was not seen healthy lately and does not answer
        now (its ComfyUI died while idle): then the job goes straight back, unharmed."""
        try:
            fresh = await self._fresh(endpoint)
        except asyncio.CancelledError:  # not yet a run shutdown knows about: hand it back here
            await self._release(job, "requeued: nomad serve shut down")
            raise
        if not fresh:
            event("worker.endpoint_down", level=logging.WARNING, worker=name, endpoint=endpoint)
            await self._release(job, f"requeued: ComfyUI at {endpoint} did not answer")
            return True
        return await self._process(rt, endpoint, name, job)

    async def _fresh(self, endpoint: str) -> bool:
        """Seen healthy within ``health_fresh_seconds`` (a finished run or a probe), or answers now."""
        probe: Callable[[str], Awaitable[bool]] | None = getattr(self.runner, "healthy", None)
        if probe is None:
            return True
        seen = self._seen_ok.get(endpoint)
        if seen is not None and self.clock() - seen < self.config.health_fresh_seconds:
            return True
        if not await probe(endpoint):
            return False
        self._seen_ok[endpoint] = self.clock()
        return True

    async def _until_healthy(self, endpoint: str, name: str) -> None:
        """After an endpoint failure, lease nothing until it answers again (backoff, capped).

        Runners without a ``healthy`` probe (test doubles) just back off once.
        """
        probe: Callable[[str], Awaitable[bool]] | None = getattr(self.runner, "healthy", None)
        tries = 0
        while not self.stopping:
            await self.sleep(self.config.backoff(tries))
            if probe is None or await probe(endpoint):
                self._seen_ok[endpoint] = self.clock()
                return
            if tries == 0:
                event("worker.endpoint_down", level=logging.WARNING, worker=name, endpoint=endpoint)
            tries += 1

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

    async def _watch_cancels(self) -> None:
        """Stop a cancelled run within about a second (NOTIFY on PostgreSQL, a short poll on
        SQLite) instead of at its next heartbeat: a cancelled job must not keep a GPU busy."""
        while not self.stopping:
            runs = {r.job.id: r for r in self._running.values() if not r.cancelled}
            if not runs:
                self._started.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.idle_poll_seconds):
                        await self._started.wait()
                continue
            try:
                ids = await asyncio.to_thread(
                    self.queue.wait_for_cancel, list(runs), self.config.cancel_wait_seconds
                )
            except NomadError:  # the heartbeat still notices, later
                await self.sleep(self.config.cancel_wait_seconds)
                continue
            for job_id in ids:
                run = runs[job_id]
                if not run.cancelled and not run.task.done():
                    await self._stop_cancelled(run)

    async def _stop_cancelled(self, run: _Running) -> None:
        """Interrupt ComfyUI first (that is what frees the GPU), then end the run's task."""
        run.cancelled = True
        event("job.cancel_seen", job=run.job.id, endpoint=run.endpoint)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ABORT_SECONDS):
                await self.runner.interrupt(run.endpoint)
        run.task.cancel()

    async def _process(self, rt: ClusterRuntime, endpoint: str, name: str, job: Job) -> bool:
        """Run one leased job; True when the endpoint failed it (the worker then waits for health)."""
        run = _Running(job, asyncio.current_task(), endpoint)  # type: ignore[arg-type]
        inner = asyncio.create_task(self._attempts(rt, endpoint, name, run))
        run.task = inner
        self._running[name] = run
        self._started.set()
        beat = asyncio.create_task(self._heartbeat(endpoint, run))
        event("job.start", job=job.id, worker=name, workflow=job.workflow, attempt=job.attempts)
        try:
            try:
                await asyncio.wait({inner})
            except asyncio.CancelledError:  # stop_cluster: this run must not outlive its cluster
                await self._abort(run, "requeued: its cluster was stopped")
                raise
            if run.shutdown:  # fenced: a job that completed meanwhile stays completed
                await self._release(job, "requeued: nomad serve shut down")
        finally:
            beat.cancel()
            await asyncio.gather(beat, return_exceptions=True)
            self._running.pop(name, None)
            run.ended.set()
        return run.sick

    async def _abort(self, run: _Running, reason: str) -> None:
        """Cancel a run, interrupt its ComfyUI (bounded: it may be gone) and give the job back."""
        run.shutdown = True
        run.task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ABORT_SECONDS):
                await asyncio.gather(run.task, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ABORT_SECONDS):
                await self.runner.interrupt(run.endpoint)
        await self._release(run.job, reason)

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

        try:
            report = await self._run(endpoint, name, run, progress)
            if report is None:
                return
            keys = [output_key(job.id, i, o.ext, cfg.prefix) for i, o in enumerate(report.outputs)]
            for key, out in zip(keys, report.outputs, strict=True):
                await self._infra_retry(
                    run, "store an output", functools.partial(self.store.put, key, out.data)
                )
            await self._complete(rt, name, run, keys, report.times)
        except _GiveBack as back:
            run.sick = True  # pause (and check the endpoint) before leasing again
            await self._release(job, back.reason)

    async def _run(
        self, endpoint: str, name: str, run: _Running, progress: Callable[[float], None]
    ) -> RunReport | None:
        """Run the graph, retrying what is not the job's fault; None when the job was settled."""
        job, cfg = run.job, self.config
        endpoint_tries, infra_tries, infra_since = 0, 0, None
        while True:
            try:
                report = await self.runner.run(job, endpoint, progress)
                self._seen_ok[endpoint] = self.clock()
                return report
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if run.shutdown or run.cancelled:
                    return None  # the interrupt we asked for; the job is requeued or cancelled
                kind = failure_kind(exc)
                event(
                    "job.error",
                    level=logging.WARNING,
                    job=job.id,
                    worker=name,
                    kind=kind,
                    error=error_text(exc),
                )
                if kind == "job":
                    await self._fail(job, error_text(exc))
                    return None
                if kind == "endpoint":
                    if endpoint_tries >= cfg.retries:
                        raise _GiveBack(f"requeued: ComfyUI failed ({error_text(exc)})") from exc
                    await self.sleep(cfg.backoff(endpoint_tries))
                    endpoint_tries += 1
                    continue
                infra_since = infra_since if infra_since is not None else self.clock()
                self._infra_give_up(infra_since, exc)
                await self.sleep(cfg.backoff(infra_tries))
                infra_tries += 1

    def _infra_give_up(self, since: float, exc: Exception) -> None:
        """Past ``infra_wait_seconds`` of storage/queue trouble, hand the job back (no attempt)."""
        waited = self.clock() - since
        if waited >= self.config.infra_wait_seconds:
            raise _GiveBack(f"requeued: {error_text(exc)} (waited {waited:.0f}s)") from exc

    async def _infra_retry(self, run: _Running, what: str, fn: Callable[[], Any]) -> Any:
        """Call blocking ``fn`` in a thread; on storage/queue trouble wait with backoff and retry."""
        since, tries = self.clock(), 0
        while True:
            try:
                return await asyncio.to_thread(fn)
            except Exception as exc:
                if failure_kind(exc) != "infra":
                    raise
                event(
                    "job.waiting",
                    level=logging.WARNING,
                    job=run.job.id,
                    action=what,
                    error=error_text(exc),
                )
                self._infra_give_up(since, exc)
                await self.sleep(self.config.backoff(tries))
                tries += 1

    async def _complete(
        self,
        rt: ClusterRuntime,
        name: str,
        run: _Running,
        keys: list[str],
        times: dict[str, float],
    ) -> None:
        job = run.job
        now = self.clock()
        started = job.times.get("started_at", now)
        cost = rt.price_per_hour * max(0.0, now - started) / 3600.0
        if "cluster_requested_at" in job.times:
            cost += rt.cold_share
        stamps = {**times, "finished_at": now}
        ok = await self._infra_retry(
            run,
            "record the result",
            lambda: self.queue.complete(
                job.id,
                job.lease_token or "",
                outputs=keys,
                gpu=rt.gpu,
                cost=round(cost, 6),
                times=stamps,
            ),
        )
        if ok:
            self.eta.add_run(job.workflow, rt.gpu, now - started, cold=_cold_cache(times))
        event(
            "job.done" if ok else "job.stale",
            job=job.id,
            worker=name,
            outputs=len(keys),
            seconds=now - started,
            cost=cost,
        )

    async def _fail(self, job: Job, error: str) -> None:
        """The job's own fault: spend the attempt and record why (no retry: it would fail again)."""
        for tries in range(SETTLE_TRIES):
            try:
                after = await asyncio.to_thread(
                    self.queue.fail, job.id, job.lease_token or "", error, retry=False
                )
                event("job.failed", job=job.id, status=after.status.value, error=error)
                return
            except NomadError as exc:
                event("job.fail_unrecorded", level=logging.WARNING, job=job.id, error=exc.message)
                await self.sleep(self.config.backoff(tries))

    async def _release(self, job: Job, reason: str) -> None:
        """Hand a job back unharmed (its attempt refunded); fenced, so a finished job stays finished.

        If the queue cannot be reached, the lease simply expires later.
        """
        for tries in range(SETTLE_TRIES):
            try:
                await asyncio.to_thread(self.queue.release, job.id, job.lease_token or "", reason)
                event("job.released", job=job.id, reason=reason)
                return
            except NomadError as exc:
                event("job.release_failed", level=logging.WARNING, job=job.id, error=exc.message)
                await self.sleep(self.config.backoff(tries))


def _cold_cache(times: dict[str, float]) -> bool | None:
    """Whether ComfyUI loaded models for this run (``loaded_at`` after ``executing_at``)."""
    if "loaded_at" not in times or "executing_at" not in times:
        return None
    return times["loaded_at"] > times["executing_at"]
