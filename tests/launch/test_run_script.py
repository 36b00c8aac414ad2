"""The sky/ template's run script, executed for real: N servers on BASE+i, watchdog ends the job when idle."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from nomad import launch
from nomad.backends.local.process import free_port
from nomad.backends.skypilot.task import load_template


def _two_free_ports() -> int:
    for _ in range(20):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


def test_run_script_serves_every_gpu_then_exits_when_idle(tmp_path: Path) -> None:
    """Two FakeComfy servers answer on BASE and BASE+1; after the idle period the job exits and both are gone."""
    base = _two_free_ports()
    py = sys.executable
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "SKYPILOT_NUM_GPUS_PER_NODE": "2",
        "NOMAD_COMFY_PORT": str(base),
        "NOMAD_IDLE_MINUTES": "0.25",
        "NOMAD_WATCHDOG_POLL_S": "0.5",
        "NOMAD_COMFY_CMD": f"{py} -m nomad.testing.comfy --host 127.0.0.1",
        "NOMAD_WATCHDOG_CMD": f"{py} -m nomad.watchdog",
    }
    script = load_template()["run"]
    proc = subprocess.Popen(
        ["bash", "-c", script],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        urls = [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
        launch.wait_healthy(urls, timeout_s=12, interval_s=0.2)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, out
    assert "idle, stopping ComfyUI" in out and "idle for" in out
    assert (tmp_path / "comfy-0.log").exists() and (tmp_path / "comfy-1.log").exists()
    for url in urls:
        try:
            httpx.get(url + "/system_stats", timeout=2)
            raise AssertionError(f"{url} still answers after the job ended")
        except httpx.TransportError:
            pass
