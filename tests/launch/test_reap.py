"""A server stopped by pid (idle teardown) is reaped, not left as a zombie until the next wake."""

from __future__ import annotations

import sys
from pathlib import Path

from nomad.backends.local.process import spawn, stop_process


def test_stopped_child_is_reaped(tmp_path: Path) -> None:
    """stop_process(pid) on our own child collects it: /proc/PID is gone, no 'Z' state left."""
    proc = spawn([sys.executable, "-c", "import time; time.sleep(600)"])
    pid = proc.pid
    stop_process(pid, timeout_s=10)
    assert not Path(f"/proc/{pid}").exists()
    proc.returncode = 0  # already reaped by stop_process; keep Popen from waiting again
