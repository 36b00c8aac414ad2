# ruff: noqa: E402  -- the sys.path fix below must run before any other import
"""How fast a cancel reaches ComfyUI: `nomad jobs cancel` → `/interrupt` (not a test).

A WorkerPool runs a job on FakeComfy (a ComfyUI protocol double, held at
sampler step 1); the job is cancelled in the queue and the time until the
double receives `/interrupt` is measured. Baseline in the same run: the same
pool with the cancel watcher switched off, so only the lease heartbeat
(10 s by default, --heartbeat here) notices.

    .venv/bin/python bench/cancel.py                        # SQLite (0.25 s poll)
    .venv/bin/python bench/cancel.py --queue-url postgresql://postgres@127.0.0.1:5432/DB
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py would shadow the stdlib `queue` (and break asyncio.to_thread)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

from nomad.queue import open_queue
from nomad.serve.outputs import MemoryOutputs
from nomad.serve.runner import ComfyRunner
from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
from nomad.testing.comfy import FakeComfy

GRAPH = Path(__file__).resolve().parents[1] / "workflows" / "flux_schnell.json"


async def measure(
    url: str | None, tmp: Path, runs: int, heartbeat: float, watcher: bool
) -> list[float]:
    queue = open_queue(url, tmp, lease_seconds=3600)
    cfg = PoolConfig(lease_seconds=3600, heartbeat_seconds=heartbeat, idle_poll_seconds=0.05)
    pool = WorkerPool(queue, ComfyRunner(MemoryOutputs()), MemoryOutputs(), config=cfg)
    if not watcher:

        async def off() -> None:
            return None

        pool._watch_cancels = off  # type: ignore[method-assign]
    seconds: list[float] = []
    async with FakeComfy(hold_at_step=1, hold_timeout=600) as fc:
        pool.start_cluster(ClusterRuntime("c", [fc.url], gpu="fake"))
        for _ in range(runs):
            job = queue.enqueue(str(GRAPH), {})
            while not fc.held:
                await asyncio.sleep(0.005)
            seen = len(fc.interrupts)
            t0 = time.monotonic()
            await asyncio.to_thread(queue.cancel, job.id)
            while len(fc.interrupts) == seen:
                await asyncio.sleep(0.005)
            seconds.append(time.monotonic() - t0)
            while fc.held or fc._running is not None:
                await asyncio.sleep(0.005)
        await pool.shutdown(1.0)
    queue.close()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--queue-url", default=None, help="PostgreSQL URL (default: SQLite in a temp dir)"
    )
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--heartbeat", type=float, default=10.0, help="lease heartbeat seconds (baseline)"
    )
    args = p.parse_args()
    results: dict[str, Any] = {}
    for label, watcher in (("watcher", True), ("heartbeat only", False)):
        with tempfile.TemporaryDirectory() as tmp:
            got = asyncio.run(
                measure(args.queue_url, Path(tmp), args.runs, args.heartbeat, watcher)
            )
        results[label] = got
        print(f"{label:15} cancel→/interrupt s: " + " ".join(f"{s:.3f}" for s in got), flush=True)
    ratio = statistics.median(results["heartbeat only"]) / statistics.median(results["watcher"])
    print(f"median speed-up over the heartbeat ({args.heartbeat:g} s): {ratio:.1f}x")
    json.dump({k: [round(s, 4) for s in v] for k, v in results.items()}, sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    import faulthandler

    faulthandler.dump_traceback_later(25, exit=True) if "--debug" in sys.argv else None
    main()
