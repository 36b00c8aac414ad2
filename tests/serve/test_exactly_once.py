"""Exactly once across worker PROCESSES on the real queues and real S3 (SeaweedFS)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import JobStatus, open_queue
from nomad.storage import S3Settings, Storage
from nomad.testing.wait import eventually

PROC = Path(__file__).with_name("worker_proc.py")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def spawn(
    url: str, tmp: Path, log: Path, env: dict[str, Any], *extra: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(PROC), url, str(tmp), str(log), *extra],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def storage_of(env: dict[str, Any]) -> Storage:
    import json

    return Storage(S3Settings(**json.loads(env["NOMAD_TEST_S3"])))


def test_eight_worker_processes_500_jobs_each_once(
    any_queue_url: str, tmp_path: Path, s3_env: dict[str, Any]
) -> None:
    """8 processes drain 500 jobs: all succeed, one winning complete each, 500 objects, none lost."""
    queue = open_queue(any_queue_url, tmp_path)
    ids = [queue.enqueue("echo", {"i": i}).id for i in range(500)]
    log = tmp_path / "completions.log"
    reap([spawn(any_queue_url, tmp_path, log, s3_env) for _ in range(8)], timeout=240)
    done = log.read_text().split()
    assert len(done) == 500 and set(done) == set(ids)
    assert queue.counts()[JobStatus.SUCCEEDED] == 500
    store = storage_of(s3_env)
    keys = store.list("outputs/")
    assert sorted(keys) == sorted(f"outputs/{i}/0.bin" for i in ids)
    for job_id in ids[::50]:
        assert store.get_bytes(f"outputs/{job_id}/0.bin") == f"result of {job_id}".encode()
        assert queue.get(job_id).outputs == [f"outputs/{job_id}/0.bin"]
    queue.close()


def test_sigkilled_worker_job_is_retried_and_completes_once(
    any_queue_url: str, tmp_path: Path, s3_env: dict[str, Any]
) -> None:
    """A worker SIGKILLed mid-job: after lease expiry another process completes it, once."""
    queue = open_queue(any_queue_url, tmp_path)
    job = queue.enqueue("echo", {})
    log, marker = tmp_path / "completions.log", tmp_path / "holding"
    victim = spawn(any_queue_url, tmp_path, log, s3_env, "--hold", str(marker), "--lease", "1.5")
    try:
        def started() -> bool:
            assert victim.poll() is None, victim.stderr.read().decode() if victim.stderr else ""
            return marker.exists()

        eventually(started, timeout=60, what="the victim to start the job")
        assert queue.get(job.id).status is JobStatus.RUNNING
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    reap([spawn(any_queue_url, tmp_path, log, s3_env, "--lease", "1.5")], timeout=120)
    final = queue.get(job.id)
    assert final.status is JobStatus.SUCCEEDED and final.attempts == 2
    assert log.read_text().split() == [job.id]
    assert storage_of(s3_env).list("outputs/") == [f"outputs/{job.id}/0.bin"]
    queue.close()
