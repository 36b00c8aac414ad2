"""Queue throughput and autoscaler reaction time, on SQLite and PostgreSQL.

    .venv/bin/python bench/queue.py [--jobs 2000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

1. Throughput: W worker processes each run the full cycle (enqueue → lease →
   complete) until the run's N jobs are done; jobs/s = N / wall time, with 1
   and 8 workers. The 1-worker run is the baseline the 8-worker figure is
   compared with (same machine, same run).
2. Reaction: time from ``enqueue`` (another thread) to the autoscaler's
   ``launch`` call on FakeBackend, with ``nomad serve``'s default 1 s tick.

A fresh PostgreSQL database is created and dropped; SQLite uses a temp file.
"""

# ruff: noqa: E402  -- the sys.path fix below must run before any other import

from __future__ import annotations

import os
import sys

# This file is named like the stdlib ``queue`` module; keep its folder off the
# import path so ``import queue`` (multiprocessing, psycopg) finds the real one.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any


def _worker(url: str, data_dir: str, share: int, barrier: Any, out: Any) -> None:
    from nomad.queue import open_queue

    q = open_queue(url, Path(data_dir))
    name = f"w{mp.current_process().pid}"
    barrier.wait()
    done = 0
    for i in range(share):
        q.enqueue("bench", {"i": i})
        job = q.lease(name)
        if job is None or job.lease_token is None:
            continue
        if q.complete(job.id, job.lease_token, outputs=[f"outputs/{job.id}/0.png"]):
            done += 1
    out.put(done)
    q.close()


def throughput(url: str, data_dir: str, jobs: int, workers: int) -> float:
    """jobs/s for the full enqueue → lease → complete cycle across ``workers`` processes."""
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, data_dir, jobs // workers, barrier, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    done = sum(int(out.get(timeout=600)) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
    _drain(url, data_dir)  # stragglers a worker leased from a neighbour are finished too
    return done / elapsed


def latency(url: str, data_dir: str, n: int = 500) -> dict[str, float]:
    """Mean milliseconds per operation in one process (no contention)."""
    from nomad.queue import open_queue

    q = open_queue(url, Path(data_dir))
    spent = {"enqueue": 0.0, "lease": 0.0, "complete": 0.0}
    for i in range(n):
        t0 = time.perf_counter()
        q.enqueue("bench", {"i": i})
        t1 = time.perf_counter()
        job = q.lease("lat")
        t2 = time.perf_counter()
        assert job is not None
        q.complete(job.id, job.lease_token or "", outputs=[])
        t3 = time.perf_counter()
        spent["enqueue"] += t1 - t0
        spent["lease"] += t2 - t1
        spent["complete"] += t3 - t2
    q.close()
    return {k: v / n * 1000 for k, v in spent.items()}


def _drain(url: str, data_dir: str) -> None:
    from nomad.queue import open_queue

    q = open_queue(url, Path(data_dir))
    while (job := q.lease("drain")) is not None:
        q.complete(job.id, job.lease_token or "", outputs=[])
    q.close()


class _TimedBackend:
    """Wraps FakeBackend to timestamp the launch call."""

    def __init__(self) -> None:
        from nomad.testing.backend import FakeBackend

        self.inner = FakeBackend()
        self.launched = threading.Event()
        self.at = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def launch(self, spec: Any, offer: Any = None) -> Any:
        self.at = time.perf_counter()
        self.launched.set()
        return self.inner.launch(spec, offer)


async def _one_reaction(url: str, data_dir: str, delay: float) -> float:
    from nomad.backends.base import LaunchSpec
    from nomad.queue import open_queue
    from nomad.serve.autoscaler import Autoscaler, BackendOps
    from nomad.serve.policy import Policy, PolicyConfig

    q = open_queue(url, Path(data_dir))
    backend = _TimedBackend()
    spec = LaunchSpec(cluster_name="b", image_ref="")
    ops = BackendOps(backend, spec, None, health_timeout_s=None)  # type: ignore[arg-type]

    class Pool:
        def start_cluster(self, rt: Any) -> None: ...

        async def stop_cluster(self, name: str) -> None: ...

    scaler = Autoscaler(q, ops, Policy(PolicyConfig(base_name=f"b{uuid.uuid4().hex[:6]}")), Pool())
    stop = asyncio.Event()
    task = asyncio.create_task(scaler.run(stop, interval=1.0))
    await asyncio.sleep(delay)  # somewhere inside a tick period
    t0 = time.perf_counter()
    await asyncio.to_thread(q.enqueue, "bench", {})
    await asyncio.to_thread(backend.launched.wait, 30)
    reaction = backend.at - t0
    stop.set()
    await task
    await scaler.shutdown(teardown=True)
    for j in q.list(limit=10):
        q.cancel(j.id)
    q.close()
    return reaction


def reaction(url: str, data_dir: str, runs: int = 5) -> list[float]:
    """Seconds from enqueue to the launch call, for several enqueue offsets in the tick."""
    return [asyncio.run(_one_reaction(url, data_dir, 0.2 + 0.15 * i)) for i in range(runs)]


def _pg_db(admin: str) -> tuple[str, Any]:
    import psycopg

    name = f"nomad_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin.rsplit("/", 1)[0] + "/" + name, drop


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="admin DSN; a bench database is created and dropped ('' skips PostgreSQL)",
    )
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nomad-bench-")
    backends: list[tuple[str, str, Any]] = [("sqlite", f"sqlite:///{tmp}/bench.db", None)]
    if args.pg:
        url, drop = _pg_db(args.pg)
        backends.append(("postgres", url, drop))
        # opt-in: no WAL flush wait on any commit (a server crash may lose the last ~0.6 s)
        sep = "&" if "?" in url else "?"
        backends.append(("pg-async", f"{url}{sep}options=-c%20synchronous_commit%3Doff", None))
    print(f"queue benchmark: {args.jobs} jobs per run, {mp.cpu_count()} CPUs")
    try:
        for name, url, _ in backends:
            from nomad.queue import open_queue

            open_queue(url, Path(tmp)).close()  # migrate once, outside the timed runs
            one = throughput(url, tmp, args.jobs // 4, 1)
            eight = throughput(url, tmp, args.jobs, 8)
            react = reaction(url, tmp)
            lat = latency(url, tmp)
            print(
                f"{name:9} 1 worker {one:8.0f} jobs/s | 8 workers {eight:8.0f} jobs/s "
                f"({eight / one:4.2f}x the 1-worker baseline) | enqueue→up "
                f"median {statistics.median(react) * 1000:6.1f} ms, max {max(react) * 1000:6.1f} ms"
            )
            print(
                f"{'':9} per operation (1 process): "
                + ", ".join(f"{k} {v:.2f} ms" for k, v in lat.items())
            )
    finally:
        for _, _, drop in backends:
            if drop is not None:
                drop()


if __name__ == "__main__":
    main()
