"""`nomad serve` + `nomad web` through a private onion network built from the real binaries.

Inside a network namespace the test creates (`unshare -n`): directory authorities and relays
(Debian `tor`, and the Anyone network's `anon` where present), the embedded stack, `nomad web`,
and `nomad serve` under `strace -ff` with its managed client (which publishes the web door as a
hidden service) and `privacy.node` (the local backend's node publishes FakeComfy as a hidden
service with the key nomad made). The user reaches the web door only by its onion address;
serve reaches the node only by its onion address. Driver: `nomad.testing.onion_serve`.
Skipped with the reason where `unshare` or a binary is missing.
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

from tests.privacy.test_onion_network import _can_unshare

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _binaries(kind: str) -> tuple[str, str]:
    """The client and its gencert for ``kind``, or skip with the reason (also: no ip, no
    network namespace here)."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 not installed")
    reason = _can_unshare()
    if reason:
        pytest.skip(reason)
    if kind == "tor":
        tor, gencert = shutil.which("tor"), shutil.which("tor-gencert")
        if not tor or not gencert:
            pytest.skip("tor / tor-gencert not installed (apt-get install tor)")
        return tor, gencert
    for cand in (os.environ.get("ANON_BIN"), shutil.which("anon"),
                 str(Path(sys.executable).with_name("anon"))):  # fmt: skip
        if cand and Path(cand).is_file():
            gencert = Path(cand).with_name("anon-gencert")
            if gencert.is_file():
                return cand, str(gencert)
    pytest.skip("anon / anon-gencert not present (bash .ci/setup --tests fetches them from npm)")


_RUNS: dict[str, dict[str, Any]] = {}


def _scenario(tmp_path: Path, binary: str, gencert: str) -> dict[str, Any]:
    """One run of the driver per binary (about a minute), shared by the tests that read it."""
    if binary not in _RUNS:
        proc = subprocess.run(
            ["unshare", "-n", sys.executable, "-m", "nomad.testing.onion_serve", str(tmp_path),
             "--binary", binary, "--gencert", gencert],
            capture_output=True, text=True, timeout=900,
            env=dict(os.environ, NOMAD_ONION_NETNS="1"),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        _RUNS[binary] = json.loads(proc.stdout.strip().splitlines()[-1])
    return _RUNS[binary]


@pytest.mark.parametrize("kind", ["tor", "anon"])
def test_serve_and_web_door_only_by_onion_address(tmp_path: Path, kind: str) -> None:
    """A job submitted to the web door's hidden service runs on the node's hidden service; the
    stored image has no prompt; `nomad status` shows the node's address (the one nomad's key
    gives); serve's own process connects only to the SOCKS port, the client's control port and
    S3 — never to ComfyUI, never to DNS."""
    binary, gencert = _binaries(kind)
    r = _scenario(tmp_path, binary, gencert)
    suffix = ".anon" if kind == "anon" else ".onion"
    assert r["web_address"].endswith(suffix) and r["node_address"].endswith(suffix)
    assert r["submit_status"] == 202
    assert r["job"]["status"] == "succeeded", r["job"]
    assert r["output_status"] == 200 and r["output_is_png"]
    assert r["output_text_chunks"] == [] and not r["output_has_marker"]  # FakeComfy wrote them
    (cluster,) = r["status"]["clusters"]
    assert [e["url"] for e in cluster["endpoints"]] == [f"http://{r['node_address']}"]
    assert r["serve_rc"] == 0, r["serve_log_tail"]
    assert not r["serve_log_has_marker"]
    if "connects" in r:  # strace present: the kernel's view of serve's connects
        nomad = set(r["connects"]["nomad"])
        assert "127.0.0.1:9050" in nomad
        allowed = {"127.0.0.1:9050", f"127.0.0.1:{r['control_port']}", f"127.0.0.1:{r['s3_port']}"}
        assert nomad <= allowed, nomad - allowed
        everything = [a for role in r["connects"].values() for a in role]
        assert not [a for a in everything if a.endswith(":53")], "a DNS query was made"


@pytest.mark.parametrize("kind", ["tor", "anon"])
def test_cli_alone_in_managed_mode_starts_the_client_and_reaches_the_node_by_address(
    tmp_path: Path, kind: str
) -> None:
    """After serve, the CLI alone (`privacy.mode: managed`): `nomad up` starts the managed
    client itself, launches the node under the same address serve's node had (its key slot was
    released at teardown) and checks health through the onion network — under strace its own
    process connected only to the SOCKS and control ports; `nomad run` by that address works;
    the client stays up for later commands until `nomad dev down` stops it."""
    binary, gencert = _binaries(kind)
    r = _scenario(tmp_path, binary, gencert)
    cli = r["cli"]
    assert cli["up_rc"] == 0, cli["up_stderr"]
    assert "starting it" in cli["up_stderr"]  # nobody ran the client: `nomad up` started it
    assert cli["up_endpoints"] == [f"http://{r['node_address']}"]
    assert cli["run_rc"] == 0, cli["run_stderr"]
    assert len(cli["run_outputs"]) == 1
    assert cli["down_rc"] == 0
    assert cli["client_left_running"] is True
    assert cli["dev_down_rc"] == 0 and cli["client_running_after_dev_down"] is False
    if "up_connects" in cli:
        nomad = set(cli["up_connects"]["nomad"])
        assert nomad == {"127.0.0.1:9050", f"127.0.0.1:{cli['control_port']}"}, nomad
        everything = [a for role in cli["up_connects"].values() for a in role]
        assert not [a for a in everything if a.endswith(":53")], "a DNS query was made"
