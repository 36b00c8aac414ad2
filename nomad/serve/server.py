"""``nomad serve``: queue + autoscaler + workers in one asyncio process.

Everything is built from ``nomad.yaml`` here (so the CLI stays thin) but any
piece can be injected, which is how tests run it with FakeBackend or a
runner double. SIGTERM/SIGINT stop launching, let running jobs finish for
``grace_seconds``, give the rest back to the queue, and (unless
``keep_up``) tear the clusters down so nothing bills after we exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path

from nomad.backends.base import Backend
from nomad.config.schema import NomadConfig
from nomad.queue.base import JobQueue
from nomad.serve.autoscaler import Autoscaler, BackendOps, ClusterOps
from nomad.serve.eta import EtaModel
from nomad.serve.log import event
from nomad.serve.outputs import OutputStore, S3Outputs
from nomad.serve.policy import Policy, PolicyConfig
from nomad.serve.runner import ComfyRunner, Runner
from nomad.serve.worker import PoolConfig, WorkerPool


@dataclass(frozen=True)
class ServeOptions:
    """Process-level knobs (the rest comes from ``infra:`` and ``queue:``)."""

    interval: float = 1.0
    grace_seconds: float = 30.0
    keep_up: bool = False
    health_timeout_s: float = 900.0
    heartbeat_seconds: float = 10.0


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
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT), then shut down gracefully."""
    opts = options or ServeOptions()
    stop = stop or asyncio.Event()
    own_queue = queue is None
    if queue is None:
        from nomad.queue import open_queue

        queue = open_queue(cfg, data_dir)
    try:
        store = store or _s3_outputs(cfg, data_dir)
        ops = ops or _backend_ops(cfg, data_dir, backend, opts)
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
            queue, ops, Policy(PolicyConfig.from_infra(cfg.infra, cfg.project), eta), pool
        )
        _on_signals(stop)
        event(
            "serve.start",
            backend=cfg.infra.backend,
            idle_minutes=cfg.infra.idle_minutes,
            max_clusters=cfg.infra.max_clusters,
        )
        try:
            await scaler.run(stop, opts.interval)
        finally:
            event("serve.stopping", running=pool.busy)
            await pool.shutdown(opts.grace_seconds)
            await scaler.shutdown(teardown=not opts.keep_up)
            event("serve.stopped")
    finally:
        if own_queue:
            queue.close()


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


def _s3_outputs(cfg: NomadConfig, data_dir: Path) -> OutputStore:
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    storage = Storage(resolve_storage(cfg, data_dir))
    storage.ensure_bucket()
    return S3Outputs(storage)


def _backend_ops(
    cfg: NomadConfig, data_dir: Path, backend: Backend | None, opts: ServeOptions
) -> ClusterOps:
    from nomad.backends import get_backend
    from nomad.launch import spec_from_config

    backend = backend or get_backend(None, cfg, data_dir)
    spec = spec_from_config(cfg, data_dir, need_image=backend.name != "local")
    return BackendOps(backend, spec, data_dir, health_timeout_s=opts.health_timeout_s)


def _runner(cfg: NomadConfig, store: OutputStore) -> Runner:
    proxy = cfg.privacy.proxy if cfg.privacy.enabled else None
    return ComfyRunner(store, proxy=proxy, workflow_dirs=tuple(Path(d) for d in cfg.workflows.dirs))
