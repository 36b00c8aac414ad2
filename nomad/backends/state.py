"""Local record of the clusters nomad launched: one JSON file per cluster in the data dir.

``nomad up`` writes it, ``nomad status``/``down`` and ``nomad run`` read it, so
a later process (or the bot) knows endpoints, start time and $/hour without
asking the provider. Files are written atomically (temp file + rename) so a
crash never leaves half a record.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nomad.backends.base import ClusterInfo, ClusterState, Endpoint, Offer
from nomad.errors import BackendError

STATE_DIR = "clusters"


def state_dir(data_dir: Path) -> Path:
    """``DATA_DIR/clusters``, created on first use."""
    path = Path(data_dir) / STATE_DIR
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def save(data_dir: Path, info: ClusterInfo) -> Path:
    """Write (or replace) the record for ``info.name`` atomically."""
    path = _path(data_dir, info.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info_to_json(info), fh, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def load(data_dir: Path, name: str) -> ClusterInfo | None:
    """The record for ``name``, or None when nomad has none."""
    path = _path(data_dir, name)
    if not path.exists():
        return None
    try:
        return info_from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(
            f"cluster record {path} is unreadable: {exc}",
            hint=f"check the cluster with the provider, then delete {path}",
        ) from None


def load_all(data_dir: Path) -> list[ClusterInfo]:
    """Every recorded cluster, sorted by name."""
    names = sorted(p.stem for p in state_dir(data_dir).glob("*.json"))
    return [info for n in names if (info := load(data_dir, n)) is not None]


def remove(data_dir: Path, name: str) -> None:
    """Forget ``name`` (missing is fine)."""
    _path(data_dir, name).unlink(missing_ok=True)


def current_endpoints(data_dir: Path) -> list[str]:
    """ComfyUI URLs of every recorded cluster that is UP (used by ``nomad run``)."""
    return [
        ep.url
        for info in load_all(data_dir)
        if info.state == ClusterState.UP
        for ep in info.endpoints
    ]


def info_to_json(info: ClusterInfo) -> dict[str, Any]:
    """Stable JSON form of a cluster (no secrets: ClusterInfo never holds any)."""
    return {
        "name": info.name,
        "backend": info.backend,
        "state": info.state.value,
        "endpoints": [{"url": e.url, "gpu_index": e.gpu_index} for e in info.endpoints],
        "offer": info.offer.to_json() if info.offer else None,
        "started_at": info.started_at,
        "price_per_hour": info.price_per_hour,
        "detail": info.detail,
        "extra": info.extra,
    }


def info_from_json(data: dict[str, Any]) -> ClusterInfo:
    """Inverse of :func:`info_to_json`."""
    offer = data.get("offer")
    return ClusterInfo(
        name=data["name"],
        backend=data["backend"],
        state=ClusterState(data["state"]),
        endpoints=[
            Endpoint(url=e["url"], gpu_index=int(e.get("gpu_index", 0)))
            for e in data.get("endpoints", [])
        ],
        offer=offer_from_json(offer) if offer else None,
        started_at=data.get("started_at"),
        price_per_hour=float(data.get("price_per_hour") or 0.0),
        detail=data.get("detail"),
        extra=dict(data.get("extra") or {}),
    )


def offer_from_json(data: dict[str, Any]) -> Offer:
    """Inverse of :meth:`Offer.to_json`."""
    return Offer(
        cloud=data["cloud"],
        region=data.get("region"),
        instance_type=data.get("instance_type"),
        gpu=data["gpu"],
        gpu_count=int(data["gpu_count"]),
        price_per_hour=float(data["price_per_hour"]),
        spot=bool(data.get("spot", False)),
        vram_gb=data.get("vram_gb"),
        price_per_image=dict(data.get("price_per_image") or {}),
    )


def _path(data_dir: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise BackendError(f"invalid cluster name {name!r}", hint="use letters, digits and dashes")
    return state_dir(data_dir) / f"{name}.json"
