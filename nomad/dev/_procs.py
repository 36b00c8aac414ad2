"""Start, find and stop the stack's daemons by pid file, without leaking zombies.

The daemons outlive the ``nomad dev up`` that starts them (new session), so
they are tracked by pid files, and a pid only counts as ours when its command
line mentions the stack's own directory (pids get reused).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Popen objects of daemons started by this process, so they can be reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    *,
    die_with_parent: bool = False,
) -> int:
    """Start a daemon in its own session with output appended to ``log_path``; return its pid.

    ``die_with_parent`` (Linux): the daemon gets SIGTERM when the thread that
    started it dies, so a killed test run leaves no 1 GB SeaweedFS behind.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
            preexec_fn=_parent_death_signal() if die_with_parent else None,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook calling prctl(PR_SET_PDEATHSIG, SIGTERM); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return hook


def read_pid(pid_file: Path) -> int | None:
    """The pid stored in ``pid_file``, or None when absent or garbled."""
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def is_alive(pid: int | None, marker: str) -> bool:
    """True if ``pid`` runs, is not a zombie and its command line contains ``marker``."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: poll() is exact, and /proc/PID/cmdline reads empty while
        # a large binary is still being exec'd.
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    if not Path("/proc/self").exists():
        return _ps_alive(pid, marker)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
    return state not in {"Z", "X"} and marker in cmdline


def _ps_alive(pid: int, marker: str) -> bool:
    """The same check through ``ps`` where there is no /proc (macOS, BSD)."""
    try:
        out = subprocess.run(
            ["ps", "-o", "stat=,command=", "-p", str(pid)],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return bool(out) and not out.startswith("Z") and marker in out


def stop(pid: int | None, marker: str, *, grace: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns once the process is gone."""
    if not is_alive(pid, marker):
        _reap(pid)
        return
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, marker, grace):
        _signal(pid, signal.SIGKILL)
        wait_gone(pid, marker, 5.0)
    _reap(pid)


def wait_gone(pid: int, marker: str, timeout: float) -> bool:
    """Wait (bounded) until the process is gone; True if it went."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid, marker):
            return True
        time.sleep(0.05)
    return not is_alive(pid, marker)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int | None) -> None:
    child = _CHILDREN.pop(pid, None) if pid else None
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)
