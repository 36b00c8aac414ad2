"""FakeComfy (the ComfyUI protocol double) runs in a thread for sync tests and as a process."""

from __future__ import annotations

import subprocess
import sys

import httpx

from nomad.testing.comfy import FakeComfy, png_bytes, png_text


def test_start_in_thread_serves_sync_clients() -> None:
    """start_in_thread() gives a live server for sync code; stop() shuts it down."""
    fc = FakeComfy.start_in_thread(gpu_name="Thread GPU")
    try:
        stats = httpx.get(f"{fc.url}/system_stats", timeout=5).json()
        assert "Thread GPU" in stats["devices"][0]["name"]
    finally:
        fc.stop()
    try:
        httpx.get(f"{fc.url}/system_stats", timeout=2)
        raise AssertionError("server still answering after stop()")
    except httpx.HTTPError:
        pass


def test_runs_as_a_process() -> None:
    """`python -m nomad.testing.comfy --port 0` announces its URL and answers /system_stats."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nomad.testing.comfy",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--gpu-name",
            "Proc GPU",
            "--vram-gb",
            "48",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded by the process: it prints once it listens
        assert "protocol double" in line
        url = line.rsplit(" ", 1)[-1].strip()
        dev = httpx.get(f"{url}/system_stats", timeout=5).json()["devices"][0]
        assert "Proc GPU" in dev["name"] and dev["vram_total"] == 48 * 1024**3
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_png_helper_roundtrip() -> None:
    """png_bytes writes a valid PNG whose tEXt chunks png_text reads back."""
    data = png_bytes(b"seed", text={"k": "v"})
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and png_text(data) == {"k": "v"}
    assert png_bytes(b"a") != png_bytes(b"b")
