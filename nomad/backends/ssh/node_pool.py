"""SkyPilot SSH node-pool config (``~/.sky/ssh_node_pools.yaml``) generated from ``infra.ssh``.

The file maps a pool name to ``{user, identity_file, hosts: [ip | {ip, user,
identity_file}]}`` (SkyPilot's ``sky/ssh_node_pools``). SkyPilot reaches hosts
on port 22 or through ``~/.ssh/config`` aliases, so a host on another port gets
an alias in a generated ssh config snippet that you ``Include`` from
``~/.ssh/config``. Other pools in an existing file are kept untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from nomad.config.schema import SSHBackendConfig
from nomad.errors import ConfigError

DEFAULT_POOLS_PATH = Path("~/.sky/ssh_node_pools.yaml")


def alias(pool: str, index: int) -> str:
    """ssh config alias for host ``index`` of ``pool`` (used for non-22 ports)."""
    return f"nomad-{pool}-{index}"


def pool_config(cfg: SSHBackendConfig) -> dict[str, Any]:
    """The pool's entry: pool-level user/key from the first host, per-host overrides."""
    if not cfg.hosts:
        raise ConfigError(
            "infra.ssh.hosts is empty", hint="add at least one {ip, user, identity_file}"
        )
    for i, h in enumerate(cfg.hosts):
        if not h.identity_file:
            raise ConfigError(
                f"infra.ssh.hosts[{i}] ({h.ip}) has no identity_file",
                hint="SkyPilot SSH node pools need a private key path per host",
            )
    first = cfg.hosts[0]
    hosts: list[Any] = []
    for i, h in enumerate(cfg.hosts):
        entry: dict[str, Any] = {"ip": h.ip if h.port == 22 else alias(cfg.pool, i)}
        if h.user != first.user:
            entry["user"] = h.user
        if h.identity_file != first.identity_file:
            entry["identity_file"] = h.identity_file
        hosts.append(entry)
    return {"user": first.user, "identity_file": first.identity_file, "hosts": hosts}


def ssh_config_snippet(cfg: SSHBackendConfig) -> str:
    """``Host`` entries for hosts not on port 22 (empty when every host uses 22)."""
    blocks = []
    for i, h in enumerate(cfg.hosts):
        if h.port != 22:
            blocks.append(
                f"Host {alias(cfg.pool, i)}\n  HostName {h.ip}\n  Port {h.port}\n"
                f"  User {h.user}\n  IdentityFile {h.identity_file}\n"
            )
    return "\n".join(blocks)


def merge_into(path: Path, pool: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The whole pools file with ``pool`` set to ``entry`` (other pools kept)."""
    path = path.expanduser()
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{path}: invalid YAML: {exc}", hint="fix or move the file, then retry"
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: must map pool names to pool configs")
        existing = loaded or {}
    existing[pool] = entry
    return existing


def write(path: Path, pools: dict[str, Any]) -> Path:
    """Write the pools file atomically (0600: it names private keys)."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(pools, fh, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def validate_with_skypilot(pool: str, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Run SkyPilot's own pool checks (required keys, key files exist); return resolved hosts."""
    from nomad.backends.skypilot._import import require_sky

    require_sky()
    from sky.ssh_node_pools import core, utils

    try:
        core.SSHNodePoolManager._validate_pool_config(
            core.SSHNodePoolManager.__new__(core.SSHNodePoolManager), entry
        )
        hosts: list[dict[str, Any]] = utils.prepare_hosts_info(pool, entry)
    except ValueError as exc:
        raise ConfigError(
            f"SkyPilot rejects SSH node pool {pool!r}: {exc}", hint="fix infra.ssh"
        ) from None
    return hosts
