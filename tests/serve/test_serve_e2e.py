"""End to end on the embedded default: `nomad serve` (a real process) with the local backend
running FakeComfy processes (ComfyUI protocol doubles), jobs from `nomad submit`, outputs in real S3."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.queue import JobStatus, open_queue
from nomad.storage import Storage
from nomad.testing.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOMAD = [str(Path(sys.executable).with_name("nomad"))]
GRAPH = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "nomad"}},
}


def free_port_pair() -> int:
    """A port p with p and p+1 free on loopback (the local backend uses consecutive ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s2:
                s2.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def wait_until(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll ``check`` (bounded) until it returns something truthy."""
    return eventually(check, timeout=timeout, interval=0.2, what=what)


@pytest.fixture
def project(tmp_path: Path, stack: Any) -> Iterator[tuple[Path, dict[str, str], Storage]]:
    """nomad.yaml for the local backend + FakeComfy, a fresh bucket, and the env carrying S3 keys."""
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    store = Storage(stack.s3_settings(bucket))
    store.ensure_bucket()
    port = free_port_pair()
    comfy = [sys.executable, "-m", "nomad.testing.comfy", "--host", "127.0.0.1", "--port", "{port}"]
    (tmp_path / "nomad.yaml").write_text(
        json.dumps(
            {
                "project": "e2e",
                "storage": {"bucket": bucket},
                "image": {"comfyui": {"port": port}},
                "queue": {"lease_seconds": 30},
                # FakeComfy embeds the graph in a tEXt chunk, as ComfyUI does: stored without it
                "privacy": {"strip_metadata": "always"},
                "infra": {
                    "backend": "local",
                    "idle_minutes": 0.05,
                    "local": {
                        "mode": "command",
                        "command": comfy,
                        "gpus": 2,
                        "price_per_hour": 0.9,
                        "gpu_name": "fake-gpu",
                    },
                },
            }
        )
    )
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    env = {
        **os.environ,
        "NOMAD_CONFIG": str(tmp_path / "nomad.yaml"),
        "NOMAD_DATA_DIR": str(tmp_path / "data"),
        "NOMAD_S3_ENDPOINT": stack.s3_endpoint,
        "NOMAD_S3_ACCESS_KEY_ID": stack.access_key,
        "NOMAD_S3_SECRET_ACCESS_KEY": stack.secret_key,
        "NOMAD_S3_REGION": stack.region,
    }
    yield tmp_path, env, store


def nomad(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([*NOMAD, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_serve_submit_three_jobs_outputs_in_s3_then_teardown(
    project: tuple[Path, dict[str, str], Storage],
) -> None:
    """Three submitted jobs wake the local cluster, run on FakeComfy, land in S3; idle ⇒ torn down."""
    root, env, store = project
    server = subprocess.Popen(
        [*NOMAD, "serve", "--interval", "0.2", "--grace", "5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ids = [
            json.loads(nomad(env, "submit", str(root / "graph.json"), "--set", f"n={i}", "--json"))[
                "id"
            ]
            for i in range(3)
        ]
        queue = open_queue(None, root / "data")

        def all_done() -> bool:
            jobs = [queue.get(i) for i in ids]
            assert not [j for j in jobs if j.status is JobStatus.FAILED], [j.error for j in jobs]
            return all(j.status is JobStatus.SUCCEEDED for j in jobs)

        wait_until("three jobs to succeed", all_done, timeout=120)
        for job_id in ids:
            job = queue.get(job_id)
            assert job.outputs == [f"outputs/{job_id}/0.png"] and job.gpu == "fake-gpu"
            png = store.get_bytes(job.outputs[0])
            assert png.startswith(b"\x89PNG") and b"tEXt" not in png and b"EmptyImage" not in png
            assert job.cost is not None and job.cost > 0
        shown = json.loads(nomad(env, "jobs", "show", ids[0], "--json"))
        assert {"provision", "inference", "download + output upload"} <= set(shown["phases"])
        wait_until(
            "the idle cluster to be torn down",
            lambda: (
                (queue.get_state("autoscaler", "status") or {}).get("state") == "cold"
                and not (root / "data" / "local" / "e2e-serve").exists()
            ),
            timeout=60,
        )
        status = queue.get_state("autoscaler", "status") or {}
        assert status["cold_start_median_s"] is not None and status["spend_today"] > 0
        queue.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
    assert server.returncode == 0, err[-3000:]
    assert "cluster.down cluster=e2e-serve reason=idle" in err
