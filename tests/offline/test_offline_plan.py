"""`nomad plan --catalog` is offline: same plan with no network at all, and no connect leaves loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nomad.resources import catalog_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOMAD = str(Path(sys.executable).with_name("nomad"))
CONFIG = "project: offline\ninfra:\n  backend: skypilot\n  gpus: [RTX4090, L40S, A100-80GB]\n"
INET = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?, (sin6?_port=htons\(\d+\)), (.*?)\}")


def _netns() -> list[str] | None:
    """argv prefix that runs a command in a fresh network namespace (loopback only), if allowed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    argv = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-rn"]
    probe = subprocess.run([*argv, "true"], capture_output=True, timeout=30)
    return argv if probe.returncode == 0 else None


def _unguarded_env() -> dict[str, str]:
    """The environment without the suite's Python-level guard, so syscalls show what nomad does."""
    env = {k: v for k, v in os.environ.items() if k != "NOMAD_TEST_NETLOG"}
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and "_netguard" not in p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _plan(project: Path, prefix: list[str], netns: bool = False) -> dict[str, object]:
    # lo starts down in a new namespace: bring it up when `ip` exists ("only loopback")
    up = "command -v ip >/dev/null && ip link set lo up 2>/dev/null; " if netns else ""
    cmd = f'{up}exec "$@"'
    argv = [*prefix, "sh", "-c", cmd, "sh", NOMAD, "--data-dir", str(project / "data"),
            "plan", "--catalog", str(catalog_dir()), "--json"]  # fmt: skip
    proc = subprocess.run(
        argv, cwd=project, env=_unguarded_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_catalog_plan_is_the_same_without_any_network(tmp_path: Path) -> None:
    """The pinned-catalog plan in a network namespace with only loopback equals the plan with network."""
    prefix = _netns()
    if prefix is None:
        pytest.skip("cannot create a network namespace here (unshare -n / -rn refused)")
    (tmp_path / "nomad.yaml").write_text(CONFIG)
    with_network = _plan(tmp_path, [])
    without = _plan(tmp_path, prefix, netns=True)
    assert with_network["offers"] and without == with_network


def test_catalog_plan_connects_nowhere_outside_loopback(tmp_path: Path) -> None:
    """Traced with strace -f (every child, the `aws` CLI SkyPilot runs included): no AF_INET connect leaves 127/8 or ::1."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    (tmp_path / "nomad.yaml").write_text(CONFIG)
    trace = tmp_path / "connect.trace"
    plan = _plan(tmp_path, [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace)])
    assert plan["offers"]
    calls = [m.group(2) for m in INET.finditer(trace.read_text())]
    outside = [c for c in calls if "127." not in c and '"::1"' not in c]
    assert outside == [], outside
