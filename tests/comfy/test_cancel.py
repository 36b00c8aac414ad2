"""Cancel reaches ComfyUI within about a second, not at the next heartbeat.

The heartbeat is set to an hour here, so an interrupt that arrives at all came
from the cancel watcher (NOTIFY on PostgreSQL, a 0.25 s poll on SQLite). Waits
are bounded waits for events; no timing threshold decides a test.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from nomad.queue import JobStatus, open_queue
from nomad.serve.outputs import MemoryOutputs
from nomad.serve.runner import ComfyRunner
from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually_async

from .conftest import t2i_graph


def test_wait_for_cancel_wakes_on_the_cancel(queue_url: str, tmp_path: Path) -> None:
    """A waiter blocked for up to 10 minutes returns the job id as soon as it is cancelled."""
    queue = open_queue(queue_url, tmp_path)
    job = queue.enqueue("flux_schnell", {})
    other = queue.enqueue("flux_schnell", {})
    assert queue.wait_for_cancel([job.id], 0) == []
    got: list[list[str]] = []
    listening = threading.Event()

    def wait() -> None:
        listening.set()
        got.append(queue.wait_for_cancel([job.id, other.id], 600))

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert listening.wait(10)
    canceller = open_queue(
        queue_url, tmp_path
    )  # another process's connection, as `nomad jobs cancel`
    canceller.cancel(job.id)
    canceller.close()
    waiter.join(60)  # bounded: far below the waiter's own 600 s
    assert not waiter.is_alive() and got == [[job.id]]
    queue.close()


async def test_cancel_of_a_running_job_interrupts_comfyui_without_a_heartbeat(
    queue_url: str, tmp_path: Path
) -> None:
    """A running job cancelled in the queue: FakeComfy gets /interrupt, the job ends cancelled."""
    graph_file = tmp_path / "g.json"
    graph_file.write_text(json.dumps(t2i_graph()))
    queue = open_queue(queue_url, tmp_path, lease_seconds=3600)
    store = MemoryOutputs()
    cfg = PoolConfig(lease_seconds=3600, heartbeat_seconds=3600, idle_poll_seconds=0.05)
    pool = WorkerPool(queue, ComfyRunner(store), store, config=cfg)

    async def until(what: str, check: Any) -> None:
        await eventually_async(
            lambda: asyncio.to_thread(check), timeout=30, interval=0.02, what=what
        )

    async with FakeComfy(hold_at_step=1, hold_timeout=600) as fc:
        job = queue.enqueue(str(graph_file), {})
        pool.start_cluster(ClusterRuntime("c", [fc.url], gpu="fake"))
        await until("the sampler to hold at step 1", lambda: fc.held)
        queue.cancel(job.id)
        await until("ComfyUI to be interrupted", lambda: fc.interrupts)
        await until("the prompt to end", lambda: fc.history)
        await pool.shutdown(1.0)
    assert queue.get(job.id).status is JobStatus.CANCELLED
    (entry,) = fc.history.values()
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"
    queue.close()
