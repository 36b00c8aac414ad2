"""`nomad serve` as a real process with the local backend: what happens to the servers when serve
is SIGKILLed (the node's own switch stops them) and when it is SIGTERMed mid-wake (bounded exit)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.local.process import pid_alive
from nomad.queue import JobStatus, open_queue
from nomad.storage import Storage
from nomad.testing.wait import eventually
from tests.serve.test_serve_e2e import GRAPH, free_port_pair
from tests.serve.test_worker import GRAPH as SAMPLER_GRAPH

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOMAD = [str(Path(sys.executable).with_name("nomad"))]
FAKE_COMFY = [
    sys.executable,
    "-m",
    "nomad.testing.comfy",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
]
SILENT = [sys.executable, "-c", "import time; time.sleep(600)"]  # alive, never answers health


def _project(
    root: Path, stack: Any, command: list[str], infra: dict[str, Any], **top: Any
) -> dict[str, str]:
    """nomad.yaml (local backend), a fresh bucket, and the environment serve runs with."""
    bucket = f"node-{uuid.uuid4().hex[:10]}"
    Storage(stack.s3_settings(bucket)).ensure_bucket()
    local = {"mode": "command", "command": command, "gpus": 1, "gpu_name": "fake-gpu"}
    cfg = {
        "project": "node",
        "storage": {"bucket": bucket},
        "image": {"comfyui": {"port": free_port_pair()}},
        "queue": {"lease_seconds": 30},
        "infra": {"backend": "local", "local": local, **infra},
        **top,
    }
    (root / "nomad.yaml").write_text(json.dumps(cfg))
    (root / "graph.json").write_text(json.dumps(GRAPH))
    return {
        **os.environ,
        "NOMAD_CONFIG": str(root / "nomad.yaml"),
        "NOMAD_DATA_DIR": str(root / "data"),
        "NOMAD_S3_ENDPOINT": stack.s3_endpoint,
        "NOMAD_S3_ACCESS_KEY_ID": stack.access_key,
        "NOMAD_S3_SECRET_ACCESS_KEY": stack.secret_key,
        "NOMAD_S3_REGION": stack.region,
    }


def _serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [*NOMAD, "serve", "--interval", "0.2", "--grace", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def _submit(env: dict[str, str], root: Path, graph: str = "graph.json") -> str:
    out = subprocess.run(
        [*NOMAD, "submit", str(root / graph), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["id"])


def _cluster_pids(root: Path, name: str = "node-serve") -> list[int]:
    """Supervisor + server pids of serve's local cluster (empty until it recorded them)."""
    run = root / "data" / "local" / name
    try:
        sup = json.loads((run / "supervisor.json").read_text())["pid"]
        servers = [int(r["pid"]) for r in json.loads((run / "pids.json").read_text())]
    except (OSError, ValueError, KeyError):
        return []
    return [int(sup), *servers]


def _executing(root: Path) -> bool:
    """Whether serve's ComfyUI is executing a prompt right now (its own /queue says so)."""
    import httpx

    doc = json.loads((root / "data" / "local" / "node-serve" / "cluster.json").read_text())
    try:
        return bool(httpx.get(doc["urls"][0] + "/queue", timeout=2).json()["queue_running"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def _cleanup(serve: subprocess.Popen[bytes], root: Path) -> None:
    """Whatever a test left: serve (asked to stop first, so it tears its clusters down), then
    every local cluster's processes by recorded pid (``node-serve-2`` after a re-wake too)."""
    if serve.poll() is None:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    for run in sorted((root / "data" / "local").glob("node-serve*")):
        for pid in _cluster_pids(root, run.name):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_sigkilled_serve_leaves_no_servers_behind(tmp_path: Path, stack: Any) -> None:
    """SIGKILL serve while its local cluster is up and do not restart it: the supervisor's switch
    stops the servers after the node window (idle 0.25 min + margin 0.05 min), by itself."""
    env = _project(
        tmp_path, stack, FAKE_COMFY, {"idle_minutes": 0.25, "node_idle_margin_minutes": 0.05}
    )
    serve = _serve(env, tmp_path / "serve.log")
    try:
        job = _submit(env, tmp_path)
        queue = open_queue(None, tmp_path / "data")
        eventually(
            lambda: queue.get(job).status is JobStatus.SUCCEEDED,
            timeout=120,
            what="the job to succeed",
        )
        queue.close()
        pids = _cluster_pids(tmp_path)
        assert len(pids) == 2 and all(pid_alive(p) for p in pids), "the cluster should still be up"
        serve.send_signal(signal.SIGKILL)
        serve.wait(timeout=30)
        killed_at = time.monotonic()
        eventually(
            lambda: not any(pid_alive(p) for p in pids),
            timeout=120,
            interval=0.5,
            what="the local servers to be stopped by the node's switch",
        )
        stopped = json.loads(
            (tmp_path / "data" / "local" / "node-serve" / "stopped.json").read_text()
        )
        assert stopped["reason"].startswith("idle")
        print(
            f"servers gone {time.monotonic() - killed_at:.1f}s after SIGKILL of serve (window 18 s)"
        )
    finally:
        _cleanup(serve, tmp_path)


def test_sigterm_mid_wake_exits_promptly_and_tears_down(tmp_path: Path, stack: Any) -> None:
    """A wake stuck waiting for a server that never answers (health deadline 900 s): SIGTERM ends
    serve within 15 s, and the called-off launch tears its server down."""
    env = _project(tmp_path, stack, SILENT, {"idle_minutes": 5, "health_timeout_seconds": 900})
    serve = _serve(env, tmp_path / "serve.log")
    try:
        _submit(env, tmp_path)
        pids = eventually(
            lambda: _cluster_pids(tmp_path), timeout=60, what="the wake to start a server"
        )
        asked = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=15)  # the contract: bounded shutdown even mid-launch
        print(f"serve exited {time.monotonic() - asked:.1f}s after SIGTERM mid-wake")
        assert not any(pid_alive(p) for p in pids), (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        _cleanup(serve, tmp_path)


def test_comfy_crash_mid_job_costs_no_attempt_in_serve(tmp_path: Path, stack: Any) -> None:
    """The ComfyUI process (FakeComfy) is SIGKILLed while serve runs a job on it, with
    queue.max_attempts 1: serve notices the lost cluster, wakes a new one, and the job succeeds
    there — the crash spent no attempt and the stale run did not go on."""
    env = _project(
        tmp_path,
        stack,
        [*FAKE_COMFY, "--delay", "1.5"],
        {"idle_minutes": 5},
        queue={"lease_seconds": 30, "max_attempts": 1},
    )
    (tmp_path / "sampler.json").write_text(json.dumps(SAMPLER_GRAPH))
    serve = _serve(env, tmp_path / "serve.log")
    try:
        job = _submit(env, tmp_path, "sampler.json")
        queue = open_queue(None, tmp_path / "data")
        eventually(
            lambda: queue.get(job).status is JobStatus.RUNNING, timeout=120, what="the job to run"
        )
        first = eventually(lambda: _cluster_pids(tmp_path), timeout=30, what="the cluster's pids")
        eventually(
            lambda: _executing(tmp_path), timeout=60, what="ComfyUI to be executing the prompt"
        )
        os.kill(first[1], signal.SIGKILL)  # the ComfyUI server, mid-sampling
        done = eventually(
            lambda: (j := queue.get(job)).status.finished and j,
            timeout=180,
            interval=0.5,
            what="the job to finish on a new cluster",
        )
        assert done.status is JobStatus.SUCCEEDED, (
            done.error,
            (tmp_path / "serve.log").read_text()[-3000:],
        )
        assert done.attempts == 1
        queue.close()
    finally:
        _cleanup(serve, tmp_path)
