"""Start and stop ComfyUI server processes on this machine, leaving nothing behind.

Each server runs in its own session (process group), so stopping it also
stops anything it spawned. Stopping is SIGTERM to the group, a bounded wait,
then SIGKILL. Pids are recorded by the caller (pid files in the data dir) so a
later ``nomad down`` from another process can stop them too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (bind to 0); the caller starts a server on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn(
    argv: list[str], *, env: dict[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with output to ``log_path`` (or discarded)."""
    full_env = {**os.environ, **(env or {})}
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log_path is not None and not isinstance(out, int):
            out.close()


def stop_process(proc: subprocess.Popen[bytes] | int, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop a server and its process group: TERM, bounded wait, then KILL. Gone already is fine."""
    pid = proc if isinstance(proc, int) else proc.pid
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(proc, timeout_s):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(proc, timeout_s)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def start_comfy_double(
    *, gpu_name: str = "FakeGPU", host: str = "127.0.0.1"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m nomad.testing.comfy`` on a free loopback port; return (process, url)."""
    port = free_port(host)
    argv = [
        sys.executable,
        "-m",
        "nomad.testing.comfy",
        "--host",
        host,
        "--port",
        str(port),
        "--gpu-name",
        gpu_name,
    ]
    return spawn(argv), f"http://{host}:{port}"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(proc: subprocess.Popen[bytes] | int, timeout_s: float) -> bool:
    if not isinstance(proc, int):
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # bounded: a pid we did not spawn cannot be waited on
        if not pid_alive(proc):  # gone, or a zombie: collect it if it is ours
            _reap(proc)
            return True
        time.sleep(0.05)
    gone = not pid_alive(proc)
    _reap(proc)
    return gone


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child, so it does not stay a zombie
    (a ComfyUI stopped by idle teardown would otherwise linger until the next wake)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
