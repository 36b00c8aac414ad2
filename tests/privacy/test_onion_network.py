"""A private onion network from the real binaries: `nomad run` reaches FakeComfy only by its hidden-service name.

The test builds the network itself (3 directory authorities, 2 relays, a hidden
service in front of the ComfyUI double, nomad's managed client) inside a
network namespace it creates with `unshare -n`, so nothing can reach the real
network — once from Debian's `tor` (`.onion` names), once from the Anyone
network's `anon` (`.anon` names; `.ci/fetch-anon` provides it). Where `unshare`
or a binary is missing it is skipped with the reason — never replaced by
something that only pretends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _can_unshare() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace here: {probe.stderr.strip()}"
    return None


def test_run_and_restart_through_a_private_onion_network(
    tmp_path: Path, client_binaries: Any
) -> None:
    """Managed client bootstraps, `nomad run` by hidden-service name works, a killed client is restarted and traffic resumes; only the SOCKS port is connected to."""
    bins = client_binaries
    if bins.gencert is None:
        pytest.skip(
            f"{bins.kind}-gencert not found beside {bins.binary} (needed for the authorities' keys)"
        )
    if shutil.which("ip") is None:
        pytest.skip("ip not installed (apt-get install iproute2)")
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, NOMAD_ONION_NETNS="1")
    driver = [sys.executable, "-m", "nomad.testing.onion", str(tmp_path)]
    proc = subprocess.run(
        ["unshare", "-n", *driver, "--binary", bins.binary, "--gencert", bins.gencert],
        capture_output=True,
        text=True,
        timeout=540,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["address"].endswith(".anon" if bins.kind == "anon" else ".onion")
    first, second = report["first_run"], report["second_run"]
    assert first["rc"] == 0, first["stderr"]
    assert json.loads(first["stdout"])["endpoint"] == f"http://{report['address']}"
    assert len(report["outputs"]) == 1 and report["outputs"][0].endswith(".png")
    assert report["restarted"] is True and report["pid_changed"] is True
    assert second["rc"] == 0, second["stderr"]
    if "connects" in report:  # strace present: the kernel's view of every connect nomad made
        assert report["traced_run"]["rc"] == 0, report["traced_run"]["stderr"]
        assert report["connects"], "strace saw no connect at all"
        assert set(report["connects"]) == {"127.0.0.1:9050"}, report["connects"]
