"""Every config nomad writes for anon/tor, checked by both real binaries (`--verify-config`).

Each test runs once with Debian's `tor` and once with the Anyone network's
`anon` (`.ci/fetch-anon`); a binary that is absent is skipped with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nomad.backends.local.process import free_port
from nomad.config.schema import HiddenService, PrivacyConfig
from nomad.errors import PrivacyError
from nomad.privacy.client import check_config, render_config, verify_config
from nomad.privacy.managed import ManagedClient

SERVICES = [
    HiddenService(name="comfy", port=80, target="127.0.0.1:8188"),
    HiddenService(name="web", port=443, target="localhost:8080"),
]


def _cfg(bins: Any, **kw: Any) -> PrivacyConfig:
    proxy = f"socks5h://127.0.0.1:{free_port()}"
    return PrivacyConfig(enabled=True, client=bins.kind, binary=bins.binary, proxy=proxy, **kw)


@pytest.mark.parametrize("services", [[], SERVICES], ids=["plain", "hidden-services"])
def test_rendered_config_is_accepted(
    tmp_path: Path, client_binaries: Any, services: list[HiddenService]
) -> None:
    """render_config's anonrc/torrc, with and without hidden services, passes the real binary's check."""
    cfg = _cfg(client_binaries, hidden_services=services)
    path = verify_config(cfg, tmp_path, binary=client_binaries.binary)
    assert path.read_text() == render_config(cfg, tmp_path)
    assert ("AgreeToTerms 1" in path.read_text()) is (client_binaries.kind == "anon")


@pytest.mark.parametrize("services", [[], SERVICES], ids=["plain", "hidden-services"])
def test_managed_client_config_is_accepted(
    tmp_path: Path, client_binaries: Any, services: list[HiddenService]
) -> None:
    """ManagedClient's config (control port, cookie, pid file, hidden services, extra lines) passes the check."""
    cfg = _cfg(client_binaries, mode="managed", hidden_services=services)
    client = ManagedClient(cfg, tmp_path, extra_config=["DisableNetwork 1"])
    path = client.verify_config()
    text = path.read_text()
    wanted = ["ControlPort auto", f"ControlPortWriteToFile {client.control_file}",
              f"CookieAuthFile {client.cookie_path}", f"PidFile {client.pid_path}",
              "DisableNetwork 1", *(f"HiddenServicePort {s.port} {s.target}" for s in services)]  # fmt: skip
    assert [line for line in wanted if line not in text] == []
    assert path == client.rc_path and client.pid() is None  # checked, never started


def test_each_binary_rejects_the_other_clients_config(tmp_path: Path, client_binaries: Any) -> None:
    """The check has teeth: tor refuses anon's AgreeToTerms, anon refuses a config without it."""
    other = "tor" if client_binaries.kind == "anon" else "anon"
    cfg = PrivacyConfig(enabled=True, client=other, proxy=f"socks5h://127.0.0.1:{free_port()}")
    path = tmp_path / "rc"
    path.write_text(render_config(cfg, tmp_path))
    with pytest.raises(PrivacyError, match="rejected") as err:
        check_config(client_binaries.binary, path)
    assert ("AgreeToTerms" if other == "anon" else "terms") in str(err.value)
