"""The kernel's view: with privacy on, `nomad up` against an ``.onion`` endpoint makes one kind
of connect only, to the SOCKS port (no DNS, nothing towards ComfyUI directly), seen by strace.

Real: the ``nomad`` CLI entry point (``run_cli``) in its own process, the cluster ledger on
SQLite, the proxied health check, ``strace -f``. Double: FakeBackend in place of the local
backend (no backend hands out an ``.onion`` endpoint yet), so nothing else runs under the trace;
the proxy is a silent SOCKS server (accepts, never answers).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nomad.privacy import onion
from nomad.queue.ledger import open_ledger
from nomad.testing.onion import inet_connects
from tests.privacy.test_guards import silent_proxy  # noqa: F401  (the fixture)

DRIVER = """\
import sys

import nomad.backends
from nomad.testing.backend import FakeBackend

url = sys.argv[1]
nomad.backends.get_backend = lambda *a, **k: FakeBackend(endpoints=[url])  # an .onion endpoint
from nomad.cli.errors import run_cli
from nomad.cli.main import cli

run_cli(cli, sys.argv[2:])
"""


def test_nomad_up_connects_only_to_the_socks_port(tmp_path: Path, silent_proxy: str) -> None:  # noqa: F811
    """`nomad up` (privacy on, .onion endpoint, silent proxy) under strace: exit 8 naming the proxy,
    the failed launch closed in the ledger, and every connect/sendto of the process goes to the
    SOCKS port — no :53, no AF_UNIX resolver socket, the onion name in no syscall."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace not installed (apt-get install strace)")
    host = onion.encode(bytes(32), "onion")
    port = int(silent_proxy.rsplit(":", 1)[1])
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(
        "project: p\ninfra:\n  backend: local\n"
        f"privacy:\n  enabled: true\n  proxy: {silent_proxy}\n  connect_timeout: 1\n"
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    trace, data = tmp_path / "strace.txt", tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOMAD_") or "NETLOG" in k}
    proc = subprocess.run(
        [
            strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-e", "signal=none",
            "-o", str(trace), sys.executable, str(driver), f"http://{host}",
            "--data-dir", str(data), "--config", str(cfg), "up", "--json", "--timeout", "30",
        ],
        env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    text = trace.read_text()
    if proc.returncode != 8 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 8, proc.stderr
    assert "through the proxy" in proc.stderr and "no answer within 1 s" in proc.stderr
    book = open_ledger(None, data, project="p")
    try:
        row = book.last("nomad-p")
        assert row is not None and "no answer within 1 s" in (row.detail or "")
        assert book.open_rows() == []  # torn down and closed
    finally:
        book.close()
    calls = [
        line for line in text.splitlines() if re.match(r"\d+ +(connect|sendto|sendmsg)\(", line)
    ]
    assert calls, text
    connects = [line for line in calls if " connect(" in line]
    assert connects and all("AF_INET," in c for c in connects), connects  # no AF_UNIX (nscd…)
    assert set(inet_connects(text)) == {f"127.0.0.1:{port}"}  # no :53, no ComfyUI, nothing else
    sends = [line for line in calls if " connect(" not in line]
    assert all(", NULL, 0)" in s for s in sends), sends  # only on the connected proxy socket
    assert host not in text and host[:20] not in text
