"""``nomad serve``: queue + autoscaler + workers in one asyncio process.

Everything is built from ``nomad.yaml`` here (so the CLI stays thin) but any
piece can be injected, which is how tests run it with FakeBackend or a
runner double. SIGTERM/SIGINT stop launching, let running jobs finish for
``grace_seconds``, give the rest back to the queue, and (unless
``keep_up``) tear the clusters down so nothing bills after we exit.

Front doors can run in the same process, sharing the queue (one process for a
small deployment): ``with_bot`` runs the Telegram bot (long polling, or the
webhook from ``bot.webhook``), ``with_batch`` a scheduler that enqueues due
cron slots and copies finished batch outputs to their keys every
``batch_interval`` seconds. Both are checked before anything starts and
stopped on shutdown; queued jobs stay queued and the bot resumes undelivered
results on its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad.backends.base import Backend
from nomad.config.schema import BatchJob, NomadConfig
from nomad.errors import ConfigError, NomadError, NotAvailableError
from nomad.queue._sql import SqlQueue
from nomad.queue.base import JobQueue
from nomad.queue.lease import DEFAULT_TTL, LeaderLease
from nomad.queue.ledger import ClusterLedger
from nomad.serve.autoscaler import Autoscaler, BackendOps, ClusterOps
from nomad.serve.eta import EtaModel
from nomad.serve.log import event
from nomad.serve.outputs import OutputStore, S3Outputs
from nomad.serve.policy import Policy, PolicyConfig
from nomad.serve.runner import ComfyRunner, Runner, error_text
from nomad.serve.worker import PoolConfig, WorkerPool

if TYPE_CHECKING:
    from nomad.batch import BatchEnv
    from nomad.storage import Storage

DOOR_STOP_SECONDS = 10.0  # a batch round in progress may finish this long on shutdown


@dataclass(frozen=True)
class ServeOptions:
    """Process-level knobs (the rest comes from ``infra:`` and ``queue:``)."""

    interval: float = 1.0
    grace_seconds: float = 30.0
    keep_up: bool = False
    health_timeout_s: float | None = None  # None: infra.health_timeout_seconds
    heartbeat_seconds: float = 10.0
    with_bot: bool = False
    with_batch: bool = False
    batch_interval: float = 30.0
    bot_poll_timeout: int = 30  # seconds one getUpdates long poll may wait
    config_path: str | None = None  # nomad.yaml, for file:line in batch refusals and batch hooks
    # another serve holds the project's lease: wait for it instead of refusing
    standby: bool = False
    lease_ttl: float = DEFAULT_TTL  # seconds a silent serve keeps the lease


async def serve(
    cfg: NomadConfig,
    data_dir: Path,
    *,
    options: ServeOptions | None = None,
    queue: JobQueue | None = None,
    backend: Backend | None = None,
    ops: ClusterOps | None = None,
    store: OutputStore | None = None,
    runner: Runner | None = None,
    storage: Storage | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully."""
    opts = options or ServeOptions()
    check_front_doors(cfg, opts)
    stop = stop or asyncio.Event()
    own_queue = queue is None
    if queue is None:
        from nomad.queue import open_queue

        queue = open_queue(cfg, data_dir)
    assert isinstance(queue, SqlQueue)
    lease = LeaderLease(queue, cfg.project, ttl=opts.lease_ttl)
    _on_signals(stop)
    try:
        if opts.standby:
            await _standby(lease, stop)
            if stop.is_set():
                return
        else:
            lease.acquire()  # one serve per project: refuse before anything starts
        event("serve.lease", project=cfg.project, holder=lease.holder)
        await _serve(cfg, data_dir, opts, queue, lease, backend, ops, store, runner, storage, stop)
    finally:
        with contextlib.suppress(Exception):
            lease.release()
        if own_queue:
            queue.close()


async def _serve(
    cfg: NomadConfig,
    data_dir: Path,
    opts: ServeOptions,
    queue: SqlQueue,
    lease: LeaderLease,
    backend: Backend | None,
    ops: ClusterOps | None,
    store: OutputStore | None,
    runner: Runner | None,
    storage: Storage | None,
    stop: asyncio.Event,
) -> None:
    """The serve body, run while this process holds the project's lease."""
    from nomad import privacy

    privacy.configure(cfg.privacy)  # every proxied client below (injected ones too): its deadline
    ledger = ClusterLedger(queue, cfg.project)
    lost_lease = asyncio.Event()
    keeper = asyncio.create_task(_keep_lease(lease, stop, lost_lease))
    proxy = contextlib.AsyncExitStack()  # the managed anon/tor outlives everything that uses it
    try:
        from nomad.privacy.managed import supervised

        await proxy.enter_async_context(supervised(cfg.privacy, data_dir))  # S3 may need it
        store = store or S3Outputs(storage or _storage(cfg, data_dir, None))
        if cfg.privacy.strips_metadata():  # the pool stores outputs: no prompt in S3, bot, web
            from nomad.privacy.metadata import StrippedOutputs

            store = StrippedOutputs(store)
        ops = ops or _backend_ops(cfg, data_dir, backend, opts)
        if isinstance(ops, BackendOps) and ops.ledger is None:
            ops.ledger = ledger
        if isinstance(ops, BackendOps) and ops.queue is None:
            ops.queue = queue  # batch jobs waiting alone may wake on spot, at their cap
        eta = EtaModel.from_json(queue.get_state("autoscaler", "history"))
        pool = WorkerPool(
            queue,
            runner or _runner(cfg, store),
            store,
            eta=eta,
            config=PoolConfig(
                lease_seconds=cfg.queue.lease_seconds,
                prefix=cfg.storage.outputs_prefix,
                heartbeat_seconds=min(opts.heartbeat_seconds, cfg.queue.lease_seconds / 3),
            ),
        )
        scaler = Autoscaler(
            queue,
            ops,
            Policy(PolicyConfig.from_infra(cfg.infra, cfg.project), eta),
            pool,
            ledger=ledger if isinstance(ops, BackendOps) else None,  # ops that write it
        )
        event(
            "serve.start",
            backend=cfg.infra.backend,
            idle_minutes=cfg.infra.idle_minutes,
            max_clusters=cfg.infra.max_clusters,
            bot=opts.with_bot or None,
            batch=opts.with_batch or None,
        )
        try:
            async with contextlib.AsyncExitStack() as doors:
                from nomad.serve.webhooks import webhook_door

                await doors.enter_async_context(webhook_door(cfg, queue))  # API users' webhooks
                if opts.with_bot or opts.with_batch:
                    bucket = storage or _storage(cfg, data_dir, store)
                    await _open_doors(doors, cfg, data_dir, opts, queue, bucket)
                try:
                    await scaler.run(stop, opts.interval)
                finally:
                    event("serve.stopping", running=pool.busy)
                    await pool.shutdown(opts.grace_seconds)
        finally:  # front doors are closed by now; clusters go down even if one failed
            # a serve that lost its lease leaves the clusters to the one that took it over
            await scaler.shutdown(teardown=not opts.keep_up and not lost_lease.is_set())
            event("serve.stopped")
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await proxy.aclose()


async def _standby(lease: LeaderLease, stop: asyncio.Event) -> None:
    """Wait (until ``stop``) for the project's lease; say once who holds it."""
    said = None
    while not stop.is_set():
        held = await asyncio.to_thread(lease.try_acquire)
        if held is None:
            return
        if held.holder != said:
            said = held.holder
            event("serve.standby", holder=held.describe())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(5.0, lease.ttl / 3)):
                await stop.wait()


async def _keep_lease(lease: LeaderLease, stop: asyncio.Event, lost: asyncio.Event) -> None:
    """Renew every ttl/3. If another serve took the lease (we were silent past the TTL),
    stop at once and leave the clusters to it; a database hiccup is only retried."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(lease.ttl / 3):
                await stop.wait()
        if stop.is_set():
            return
        try:
            ours = await asyncio.to_thread(lease.renew)
        except Exception as exc:
            event("serve.lease_renew_failed", level=logging.WARNING, error=error_text(exc))
            continue
        if not ours:
            event("serve.lease_lost", level=logging.ERROR, holder=str(lease.current()))
            lost.set()
            stop.set()
            return


def check_front_doors(cfg: NomadConfig, opts: ServeOptions) -> None:
    """Refuse to start (nothing opened yet) when a requested front door cannot run."""
    if opts.with_batch:
        from nomad.batch import validate

        validate(
            cfg.batch.jobs, _batch_env(cfg, opts)
        )  # ConfigError with file:line for each problem
    if not opts.with_bot:
        return
    try:
        import telegram  # noqa: F401  (only to detect the extra)
    except ImportError:
        raise NotAvailableError(
            "`nomad serve --with-bot` is not available: python-telegram-bot is not installed",
            hint="pip install 'nomad-comfy[bot]', or run serve without --with-bot",
        ) from None
    from nomad_bot.run import bot_token

    bot_token(cfg)  # ConfigError with the NOMAD_BOT_TOKEN hint when missing


@contextlib.asynccontextmanager
async def bot_door(
    cfg: NomadConfig, data_dir: Path, queue: JobQueue, storage: Storage, *, poll_timeout: int = 30
) -> AsyncIterator[Any]:
    """Run the Telegram bot on this loop, sharing serve's queue; yields its runtime."""
    from nomad_bot.app import build_application
    from nomad_bot.deps import BotDeps
    from nomad_bot.run import LaunchAdmin, bot_token, protect_token, running, workflow_loader

    token = bot_token(cfg)
    protect_token(token)
    deps = BotDeps(
        config=cfg.bot,
        queue=queue,
        storage=storage,
        load_workflow=workflow_loader(cfg.workflows.dirs),
        admin=LaunchAdmin(cfg, data_dir),
    )
    from nomad import privacy

    proxy = privacy.proxy_for(cfg.privacy, "telegram")
    app = build_application(
        deps,
        token=token,
        base_url=cfg.bot.base_url,
        proxy=proxy,
        proxy_deadline=cfg.privacy.connect_timeout,
    )
    webhook = cfg.bot.webhook if cfg.bot.mode == "webhook" else None
    async with contextlib.AsyncExitStack() as stack:
        try:
            door = running(app, poll_timeout=poll_timeout, webhook=webhook)
            rt = await stack.enter_async_context(door)
        except NomadError:
            raise
        except Exception as exc:  # PTB's errors stop at this seam
            raise _bot_start_error(exc, cfg, token) from exc
        event("bot.start", mode=cfg.bot.mode)
        try:
            yield rt
        finally:
            event("bot.stopping")
    event("bot.stopped")


def _bot_start_error(exc: Exception, cfg: NomadConfig, token: str) -> NomadError:
    """A failed bot start (``getMe``, webhook setup) as a NomadError that says what to check."""
    from telegram.error import InvalidToken

    if isinstance(exc, InvalidToken):
        return ConfigError(
            "Telegram refused the bot token", hint="check NOMAD_BOT_TOKEN (from @BotFather)"
        )
    where = cfg.bot.base_url or "api.telegram.org"
    return NomadError(
        f"the Telegram bot could not start against {where}: "
        + error_text(exc).replace(token, "<token>"),
        hint="check the network (and privacy.proxy), or run serve without --with-bot",
    )


@contextlib.asynccontextmanager
async def batch_door(
    queue: JobQueue,
    jobs: list[BatchJob],
    storage: Storage,
    interval: float,
    *,
    clock: Any = None,
    env: BatchEnv | None = None,
) -> AsyncIterator[asyncio.Task[None]]:
    """Tick the batch schedule in the background until the block exits (bounded stop)."""
    if not jobs:
        event("batch.no_jobs", level=logging.WARNING, hint="add batch.jobs to nomad.yaml")
    halt = asyncio.Event()
    task = asyncio.create_task(
        batch_loop(queue, jobs, storage, halt, interval, clock=clock, env=env)
    )
    try:
        yield task
    finally:
        halt.set()
        try:  # let a round in progress finish; past the bound it is cancelled (each step is
            async with asyncio.timeout(DOOR_STOP_SECONDS):  # idempotent, so that is safe)
                await task
        except TimeoutError:
            event("batch.abandoned", level=logging.WARNING)


async def batch_loop(
    queue: JobQueue,
    jobs: list[BatchJob],
    storage: Storage,
    halt: asyncio.Event,
    interval: float,
    *,
    clock: Any = None,
    env: BatchEnv | None = None,
) -> None:
    """``tick`` + ``collect`` every ``interval`` seconds until ``halt``; a failed round is logged."""
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    event("batch.start", jobs=len(jobs), interval=interval)
    while not halt.is_set():
        await batch_round(queue, jobs, storage, now(), env=env)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await halt.wait()


async def batch_round(
    queue: JobQueue,
    jobs: list[BatchJob],
    storage: Storage,
    now: dt.datetime,
    *,
    env: BatchEnv | None = None,
) -> None:
    """One scheduler round: enqueue due slots, filter and store finished outputs (each once).

    A batch job's trouble (its limit, a broken hook, S3 refusing its key) is
    logged as that job's and never stops another job's slot or collection.
    """
    from nomad import batch

    rep = await asyncio.to_thread(batch.run_round, queue, jobs, storage, now, env=env)
    if rep.error:  # the queue itself failed: the next round retries
        event("batch.round_failed", level=logging.WARNING, error=rep.error)
    for f in rep.tick.fired:
        event("batch.queued", batch=f.name, slot=f.slot.isoformat(), job=f.job.id, why=f.reason)
    for name, why in rep.tick.waiting.items():
        event("batch.waiting", batch=name, why=why)
    for name, err in rep.tick.errors.items():
        event("batch.job_failed", level=logging.WARNING, batch=name, step="tick", error=err)
    for job_id, err in rep.collect.errors.items():
        event("batch.job_failed", level=logging.WARNING, job=job_id, step="collect", error=err)
    for key in rep.collect.stored:
        event("batch.stored", key=key)
    for key in rep.collect.ready:
        event("batch.ready", manifest=key)
    for job_id in rep.collect.retried:
        event("batch.retry", job=job_id)
    for sid in rep.collect.failed:
        event("batch.slot_failed", level=logging.WARNING, slot=sid)


def _batch_env(cfg: NomadConfig, opts: ServeOptions) -> BatchEnv:
    from nomad.batch import BatchEnv
    from nomad.config import find_config

    return BatchEnv.from_config(cfg, find_config(opts.config_path))


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


def _storage(cfg: NomadConfig, data_dir: Path, store: OutputStore | None) -> Storage:
    """The outputs bucket: the injected S3Outputs' own, else one from the config."""
    if isinstance(store, S3Outputs):
        return store.storage
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    storage = Storage(resolve_storage(cfg, data_dir))
    storage.ensure_bucket()
    return storage


async def _open_doors(
    doors: contextlib.AsyncExitStack,
    cfg: NomadConfig,
    data_dir: Path,
    opts: ServeOptions,
    queue: JobQueue,
    storage: Storage,
) -> None:
    """Start the requested front doors; ``doors`` stops them in reverse order."""
    if opts.with_bot:
        bot = bot_door(cfg, data_dir, queue, storage, poll_timeout=opts.bot_poll_timeout)
        await doors.enter_async_context(bot)
    if opts.with_batch:
        await doors.enter_async_context(
            batch_door(
                queue, cfg.batch.jobs, storage, opts.batch_interval, env=_batch_env(cfg, opts)
            )
        )


def _backend_ops(
    cfg: NomadConfig, data_dir: Path, backend: Backend | None, opts: ServeOptions
) -> ClusterOps:
    from nomad.backends import get_backend
    from nomad.launch import spec_from_config

    backend = backend or get_backend(None, cfg, data_dir)
    spec = spec_from_config(cfg, data_dir, need_image=backend.name != "local")
    from nomad.preflight import check_node_can_pull  # refuse at start, not after a paid wake

    check_node_can_pull(spec.image_ref, backend.name, cfg.registry.url)
    timeout = opts.health_timeout_s or cfg.infra.health_timeout_seconds
    from nomad.launch import health_client
    from nomad.placement import IdleRule

    return BackendOps(
        backend, spec, data_dir, health_timeout_s=timeout,
        health_client=health_client(cfg),  # through the proxy when privacy is on
        idle_rule=IdleRule.from_config(cfg),  # stop vs down by price (infra.on_idle)
        warmup=cfg if cfg.node.warmup is not None else None,  # node.warmup before workers
    )  # fmt: skip


def _runner(cfg: NomadConfig, store: OutputStore) -> Runner:
    from nomad import privacy

    proxy = privacy.proxy_for(cfg.privacy, "comfy")

    privacy.configure(cfg.privacy)
    return ComfyRunner(store, proxy=proxy, workflow_dirs=tuple(Path(d) for d in cfg.workflows.dirs))
