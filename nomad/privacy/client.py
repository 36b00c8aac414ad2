"""Config for the ``anon`` (Anyone network) or ``tor`` client nomad runs.

nomad writes the client's config file itself so privacy needs no hand-edited
torrc: a SOCKS port on loopback, a data dir under nomad's data dir, and one
``HiddenServiceDir``/``HiddenServicePort`` pair per exposed service. ``anon``
refuses to start without ``AgreeToTerms 1``; Tor rejects that option, so it
is written only for anon.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from nomad.config.schema import PrivacyConfig
from nomad.errors import PrivacyError


def socks_port(cfg: PrivacyConfig) -> int:
    """The port of the configured SOCKS proxy URL (default 9050)."""
    return urlsplit(cfg.proxy).port or 9050


def render_config(cfg: PrivacyConfig, data_dir: Path) -> str:
    """The anonrc/torrc text for this deployment (no secrets in it)."""
    base = data_dir / "privacy"
    lines = [
        f"SocksPort 127.0.0.1:{socks_port(cfg)}",
        f"DataDirectory {base / 'data'}",
        "Log notice stdout",
    ]
    if cfg.client == "anon":
        lines.append("AgreeToTerms 1")
    for hs in cfg.hidden_services:
        host, _, port = hs.target.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1") or not port.isdigit():
            raise PrivacyError(
                f"privacy.hidden_services[{hs.name}].target {hs.target!r} must be a loopback host:port",
                hint="hidden services forward to services on this machine only",
            )
        lines.append(f"HiddenServiceDir {base / 'hs' / hs.name}")
        lines.append(f"HiddenServicePort {hs.port} {hs.target}")
    lines.extend(cfg.extra_config)  # bridges, a private network: the user's own lines, last
    return "\n".join(lines) + "\n"


def find_binary(cfg: PrivacyConfig) -> str:
    """Path of the anon/tor binary, or a PrivacyError saying how to get it."""
    found = cfg.binary or shutil.which(cfg.client)
    if not found:
        hint = (
            "`npm pack @anyone-protocol/anyone-client` and put bin/linux/x64/anon on PATH"
            if cfg.client == "anon"
            else "apt-get install tor"
        )
        raise PrivacyError(f"the {cfg.client} client binary was not found", hint=hint)
    return found


def verify_config(cfg: PrivacyConfig, data_dir: Path, binary: str | None = None) -> Path:
    """Write the config and have the real binary check it (``--verify-config``)."""
    binary = binary or find_binary(cfg)
    path = data_dir / "privacy" / f"{cfg.client}rc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(cfg, data_dir))
    for hs in cfg.hidden_services:
        (data_dir / "privacy" / "hs" / hs.name).mkdir(parents=True, exist_ok=True, mode=0o700)
    check_config(binary, path)
    return path


def check_config(binary: str, path: Path) -> None:
    """Have the real binary check the config file at ``path`` (``--verify-config``), or PrivacyError.

    The check is not free of side effects: it truncates a ``ControlPortWriteToFile``
    file, so never run it on the config of a client that is running.
    """
    try:
        proc = subprocess.run(
            [binary, "--verify-config", "-f", str(path)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrivacyError(
            f"cannot run {binary} to check {path}: {exc}",
            hint="fix privacy.binary (or put the client on PATH)",
        ) from None
    if proc.returncode != 0:  # anon may abort with 134 on bad configs: any non-zero fails
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        raise PrivacyError(f"{binary} rejected {path}: {' / '.join(tail)}")
