"""The suite-wide network guard (tests/_netguard) really refuses and records connects outside loopback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

METADATA = ("169.254.169.254", 80)  # the cloud instance-metadata address


def test_guard_refuses_metadata_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the pytest process a connect to 169.254.169.254 fails with ENETUNREACH and is logged."""
    log = tmp_path / "net.log"
    monkeypatch.setenv("NOMAD_TEST_NETLOG", str(log))  # this test's own log, not the session's
    with pytest.raises(OSError) as err, socket.create_connection(METADATA, timeout=2):
        pass
    assert err.value.errno == errno.ENETUNREACH and "network guard" in str(err.value)
    assert "169.254.169.254:80" in log.read_text()


def test_guard_reaches_child_processes(tmp_path: Path) -> None:
    """A Python child started with the suite's environment is guarded too; loopback stays open."""
    log = tmp_path / "net.log"
    code = (
        "import socket\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); port = s.getsockname()[1]\n"
        "socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
        "try:\n"
        "    socket.create_connection(('169.254.169.254', 80), timeout=2)\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    env = {**os.environ, "NOMAD_TEST_NETLOG": str(log)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"refused {errno.ENETUNREACH}"
    assert log.read_text().count("169.254.169.254:80") == 1
