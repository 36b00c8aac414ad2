"""`nomad dev status` shows the managed anon/tor client: pid, SOCKS, bootstrap, restarts, addresses.

The client is the real binary started by ManagedClient. It cannot bootstrap
offline, so it is given one bridge on a closed loopback port (`UseBridges 1`,
`Bridge 127.0.0.1:9`): its SOCKS and control ports answer, bootstrap stays
below 100 %, it writes its hidden-service address, and it never connects
beyond loopback (checked under strace while writing this test).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nomad.backends.local.process import free_port
from nomad.cli.main import cli
from nomad.config.schema import HiddenService, PrivacyConfig
from nomad.errors import PrivacyError
from nomad.privacy import onion
from nomad.privacy.managed import ManagedClient
from nomad.testing.wait import eventually

OFFLINE = ["UseBridges 1", "Bridge 127.0.0.1:9"]  # one bridge, on a port where nothing listens


def _status(tmp_path: Path, config: Path, *extra: str) -> Any:
    args = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "dev", "status", *extra]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "240"})  # no folded addresses
    assert result.exit_code == 1, result.output  # the embedded stack is not up: still exit 1
    return json.loads(result.output)["privacy"] if "--json" in extra else result.output


def _setup(tmp_path: Path, bins: Any) -> tuple[Path, ManagedClient]:
    port = free_port()
    config = tmp_path / "nomad.yaml"
    config.write_text(
        "privacy:\n  enabled: true\n  mode: managed\n"
        f"  client: {bins.kind}\n  binary: {bins.binary}\n  proxy: socks5h://127.0.0.1:{port}\n"
        "  hidden_services:\n    - {name: web, port: 80, target: 127.0.0.1:8080}\n"
    )
    cfg = PrivacyConfig(
        enabled=True, mode="managed", client=bins.kind, binary=bins.binary,
        proxy=f"socks5h://127.0.0.1:{port}",
        hidden_services=[HiddenService(name="web", port=80, target="127.0.0.1:8080")],
    )  # fmt: skip
    return config, ManagedClient(cfg, tmp_path / "data", extra_config=OFFLINE)


def _start_unbootstrapped(client: ManagedClient) -> None:
    """Start without waiting for a bootstrap that cannot happen offline."""
    with pytest.raises(PrivacyError, match="did not bootstrap within 0 s"):
        client.start(timeout=0)


def _up(client: ManagedClient) -> bool:
    st = client.status()
    return (
        st.bootstrap is not None and st.socks_problem is None and st.services[0].address is not None
    )


def test_dev_status_shows_a_running_client_and_its_restarts(
    tmp_path: Path, client_binaries: Any
) -> None:
    """Running: pid, SOCKS answering, bootstrap N% < 100, address; after a kill and a restart: restarts 1, new pid."""
    config, client = _setup(tmp_path, client_binaries)
    try:
        _start_unbootstrapped(client)
        eventually(lambda: _up(client), timeout=30, what="SOCKS, control port and hostname")
        st = _status(tmp_path, config, "--json")
        assert st["pid"] == client.pid() and st["running"] is True and st["healthy"] is False
        assert st["socks_problem"] is None and st["restarts"] == 0
        assert 0 <= st["bootstrap"]["progress"] < 100
        (web,) = st["services"]
        host = (client.base / "hs" / "web" / "hostname").read_text().strip()
        assert web["address"] == host and onion.parse(host).suffix == (
            "anon" if client_binaries.kind == "anon" else "onion"
        )
        with pytest.raises(PrivacyError, match="is running"):
            client.verify_config()  # would truncate the live control-port file
        text = _status(tmp_path, config)
        assert f"bootstrap {st['bootstrap']['progress']}%" in text and "restarts 0" in text
        assert f"http://{host}" in text and str(client.pid()) in text

        first = client.pid()
        assert first is not None
        os.kill(first, signal.SIGKILL)
        eventually(lambda: client.pid() is None, timeout=10, what="the killed client to be gone")
        with pytest.raises(PrivacyError, match="did not bootstrap"):
            client.ensure_running(timeout=0)
        eventually(lambda: _up(client), timeout=30, what="the restarted client")
        again = _status(tmp_path, config, "--json")
        assert again["restarts"] == 1 and again["pid"] not in (None, first)
        assert again["services"][0]["address"] == host  # same keys, same address
    finally:
        client.stop()
    gone = _status(tmp_path, config, "--json")
    assert gone["pid"] is None and gone["running"] is False and gone["bootstrap"] is None
    assert gone["socks_problem"].startswith("nothing answers")
    assert gone["detail"].startswith("not running")
    assert "not running" in _status(tmp_path, config)


def test_dev_status_without_managed_privacy_shows_no_client(tmp_path: Path) -> None:
    """Privacy off, or an external proxy: no privacy entry (null in --json), nothing probed."""
    for privacy in ("enabled: false\n  mode: managed", "enabled: true\n  mode: external"):
        config = tmp_path / "nomad.yaml"
        config.write_text(f"privacy:\n  {privacy}\n")
        assert _status(tmp_path, config, "--json") is None


def test_dev_status_never_started_client(tmp_path: Path) -> None:
    """Managed but never started: not running, restarts unknown, the address not written yet."""
    config = tmp_path / "nomad.yaml"
    config.write_text(
        "privacy:\n  enabled: true\n  mode: managed\n"
        f"  proxy: socks5h://127.0.0.1:{free_port()}\n"
        "  hidden_services:\n    - {name: web, port: 80, target: 127.0.0.1:8080}\n"
    )
    st = _status(tmp_path, config, "--json")
    assert st["running"] is False and st["restarts"] is None and st["pid"] is None
    assert st["services"][0]["address"] is None
    assert "does not exist yet" in st["services"][0]["problem"]
