"""`nomad doctor` with privacy.mode: managed and no client running: not a failure (the first
command that needs the proxy starts it), but the config nomad would run must pass the real
binary's --verify-config, and a config it rejects is a failure naming the binary's words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nomad.backends.local.process import free_port
from nomad.config.schema import NomadConfig, PrivacyConfig
from nomad.dev.doctor import _privacy


def _cfg(tor: str, **kw: object) -> NomadConfig:
    return NomadConfig(
        privacy=PrivacyConfig(
            enabled=True, mode="managed", client="tor", binary=tor,
            proxy=f"socks5h://127.0.0.1:{free_port()}", **kw,  # type: ignore[arg-type]
        )
    )  # fmt: skip


def test_managed_and_idle_is_a_warning_with_a_verified_config(tmp_path: Path) -> None:
    tor = shutil.which("tor")
    if tor is None:
        pytest.skip("tor not installed (apt-get install tor)")
    check = _privacy(_cfg(tor), tmp_path)
    assert check.level == "warn" and "passes --verify-config" in check.detail
    assert check.fix is not None and "starts it" in check.fix
    bad = _privacy(_cfg(tor, extra_config=["NoSuchOption 1"]), tmp_path / "bad")
    assert bad.level == "fail" and "rejected" in bad.detail and "NoSuchOption" in bad.detail
