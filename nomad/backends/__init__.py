"""Launch backends behind one ``Backend`` interface; :func:`get_backend` picks one by name.

Implementations are imported only when asked for, so ``sky`` (and ``docker``)
stay out of every process that does not launch anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nomad.errors import UsageError

if TYPE_CHECKING:
    from nomad.backends.base import Backend
    from nomad.config.schema import NomadConfig

BACKENDS = ("skypilot", "local", "ssh", "fleet")


def get_backend(name: str | None, cfg: NomadConfig, data_dir: Path) -> Backend:
    """The backend called ``name`` (default ``cfg.infra.backend``), built from config."""
    from nomad import privacy

    name = name or cfg.infra.backend
    if name == "local":
        from nomad.backends.local import LocalBackend

        return LocalBackend(
            cfg.infra.local,
            data_dir,
            idle_margin_minutes=cfg.infra.node_idle_margin_minutes,
            startup_grace_s=cfg.infra.health_timeout_seconds,
            node=cfg.node,  # node.weights: fetched ⇒ weights pulled on this host at launch
            registry_proxy=privacy.proxy_for(cfg.privacy, "registry"),
        )
    if name == "skypilot":
        from nomad.backends.skypilot import SkyPilotBackend

        return SkyPilotBackend(
            catalog_dir=cfg.infra.catalog_dir,
            idle_margin_minutes=cfg.infra.node_idle_margin_minutes,
        )
    if name == "ssh":
        from nomad.backends.ssh import SSHBackend

        return SSHBackend(cfg.infra.ssh, data_dir)
    if name == "fleet":
        return _fleet(cfg, data_dir)
    raise UsageError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(BACKENDS)}")


def _fleet(cfg: NomadConfig, data_dir: Path) -> Backend:
    """``infra.fleet``'s members in one backend: ``ssh`` expands to one member per SSH pool."""
    from nomad.backends.fleet import FleetBackend

    members: dict[str, Backend] = {}
    for kind in dict.fromkeys(cfg.infra.fleet):
        if kind == "ssh":
            from nomad.backends.ssh import SSHBackend

            for pool in cfg.infra.all_ssh_pools():
                members[f"ssh/{pool.pool}"] = SSHBackend(pool, data_dir)
        else:
            members[kind] = get_backend(kind, cfg, data_dir)
    return FleetBackend(members, data_dir)
