"""A worker PROCESS for the exactly-once tests: the real WorkerPool with a runner double.

Run as ``python tests/serve/worker_proc.py QUEUE_URL DATA_DIR LOG [--hold MARKER]``
with the S3 settings as JSON in ``$NOMAD_TEST_S3``. ``EchoRunner`` stands in
for ComfyUI (it is not ComfyUI): its output bytes name the job, so the test
can check every stored object belongs to its key. Each successful
``complete`` appends the job id to LOG. The process exits when the queue has
no queued/waking/running job left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from nomad.queue import JobStatus, open_queue
from nomad.queue.base import Job
from nomad.serve.outputs import S3Outputs
from nomad.serve.runner import Progress, RunOutput, RunReport
from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
from nomad.storage import S3Settings, Storage


class EchoRunner:
    """Runner double: returns bytes naming the job; with ``hold`` it blocks after marking a file."""

    def __init__(self, hold: Path | None) -> None:
        self.hold = hold

    async def run(self, job: Job, endpoint: str, progress: Progress) -> RunReport:
        if self.hold is not None:
            self.hold.write_text(job.id)
            await asyncio.Event().wait()  # until SIGKILL
        progress(1.0)
        return RunReport([RunOutput("bin", f"result of {job.id}".encode())])

    async def interrupt(self, endpoint: str) -> None:
        return None


class LoggingQueue:
    """Delegates to the real queue; records each complete() that won."""

    def __init__(self, inner: object, log: Path) -> None:
        self._inner, self._log = inner, log

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def complete(self, job_id: str, token: str, **kw: object) -> bool:
        ok = bool(self._inner.complete(job_id, token, **kw))  # type: ignore[attr-defined]
        if ok:
            with self._log.open("a") as fh:
                fh.write(job_id + "\n")
        return ok


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("queue_url")
    p.add_argument("data_dir")
    p.add_argument("log")
    p.add_argument("--hold", default=None)
    p.add_argument("--lease", type=float, default=30.0)
    a = p.parse_args()
    s3 = json.loads(os.environ["NOMAD_TEST_S3"])
    queue = open_queue(a.queue_url, Path(a.data_dir), lease_seconds=a.lease)
    store = S3Outputs(Storage(S3Settings(**s3)))
    cfg = PoolConfig(lease_seconds=a.lease, heartbeat_seconds=a.lease / 3, idle_poll_seconds=0.2)
    pool = WorkerPool(
        LoggingQueue(queue, Path(a.log)),
        EchoRunner(Path(a.hold) if a.hold else None),  # type: ignore[arg-type]
        store,
        config=cfg,
    )
    pool.start_cluster(ClusterRuntime(f"proc{os.getpid()}", ["http://unused"], 1.0, "echo"))
    active = (JobStatus.QUEUED, JobStatus.WAKING, JobStatus.RUNNING)
    while True:
        await asyncio.sleep(0.2)
        counts = await asyncio.to_thread(queue.counts)
        if not any(counts[s] for s in active):
            break
    await pool.shutdown(5.0)
    queue.close()


if __name__ == "__main__":
    asyncio.run(main())
