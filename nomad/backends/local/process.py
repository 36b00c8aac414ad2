"""Start and stop ComfyUI server processes on this machine, leaving nothing behind.

Each server runs in its own session (process group), so stopping it also
stops anything it spawned. Stopping is SIGTERM to the group, a bounded wait,
then SIGKILL. Pids are recorded by the caller (pid files in the data dir) so a
later ``nomad down`` from another process can stop them too.

Children never inherit nomad's secrets: ComfyUI runs third-party custom
nodes, so :func:`child_env` drops ``NOMAD_*`` settings, cloud/S3 keys,
database URLs, tokens, passwords and any value carrying ``user:pass@``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nomad.osutil import pid_alive

STOP_TIMEOUT_S = 10.0

# What a ComfyUI child must never see (names upper-cased before matching).
_SECRET_PREFIXES = ("NOMAD_", "AWS_", "S3_", "PG", "SKYPILOT_", "TELEGRAM_", "BOTO", "AZURE_",
                    "GOOGLE_APPLICATION_CREDENTIALS", "DOCKER_AUTH", "SSH_AUTH_SOCK")  # fmt: skip
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "ACCESS_KEY",
                 "PRIVATE_KEY", "DATABASE_URL", "_DSN", "SESSION_KEY", "AUTH")  # fmt: skip
_URL_WITH_LOGIN = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def is_secret_env(name: str, value: str) -> bool:
    """Whether an environment variable looks like a credential or nomad's own configuration."""
    key = name.upper()
    if key.startswith(_SECRET_PREFIXES) or any(w in key for w in _SECRET_WORDS):
        return True
    return bool(_URL_WITH_LOGIN.search(value))


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus secrets (:func:`is_secret_env`), plus ``extra`` as given."""
    env = {k: v for k, v in os.environ.items() if not is_secret_env(k, v)}
    return {**env, **(extra or {})}


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (bind to 0); the caller starts a server on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    new_session: bool = True,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with output to ``log_path`` (or discarded) and a scrubbed environment.

    ``new_session``: its own process group (stopping it stops what it spawned);
    ``die_with_parent`` (Linux): SIGTERM when the starting thread dies.
    """
    full_env = child_env(env)
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            argv,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=new_session,
            preexec_fn=parent_death_signal() if die_with_parent else None,
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


def parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook calling prctl(PR_SET_PDEATHSIG, SIGTERM); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def hook() -> None:
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG

    return hook


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks (field 22 of /proc/PID/stat); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def same_process(pid: int, ticks: int | None) -> bool:
    """Alive and not a recycled pid (same start time as when it was recorded)."""
    if not pid_alive(pid):
        return False
    return ticks is None or start_ticks(pid) == ticks


def tail(path: Path, lines: int = 20, limit: int = 2000) -> str:
    """The last ``lines`` lines of a log (at most ``limit`` characters); '' when unreadable."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-limit:]


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


