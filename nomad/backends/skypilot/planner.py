"""``nomad plan`` for SkyPilot: ranked offers from its catalogs and its real optimizer.

SkyPilot reads catalogs from ``$SKY_RUNTIME_DIR/.sky/catalogs/v8`` and must see
that variable *before* ``import sky``; it also keeps global state. So planning
runs in a short-lived subprocess (:mod:`nomad.backends.skypilot._plan_worker`)
with a private runtime dir holding a copy of the pinned catalog: plans are
reproducible, offline, and never touch the user's ``~/.sky``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nomad.backends.base import LaunchSpec, Offer
from nomad.backends.skypilot._import import require_sky
from nomad.backends.state import offer_from_json
from nomad.errors import BackendError, ConfigError, NoCapacityError, NoCloudAccessError, QuotaError

CATALOG_VERSION = "v8"
PLAN_TIMEOUT_S = 180.0
_ERRORS: dict[str, type[BackendError]] = {
    "no_capacity": NoCapacityError,
    "no_cloud_access": NoCloudAccessError,
    "quota": QuotaError,
    "backend": BackendError,
}


@dataclass
class PlanRequest:
    """What the worker needs (JSON-serialisable; no secrets)."""

    gpus: list[str]
    gpu_count: int = 1
    ordered: bool = False
    spot: bool = False
    max_price_per_hour: float | None = None
    min_vram_gb: float | None = None
    clouds: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    catalog_dir: str | None = None

    @classmethod
    def from_spec(cls, spec: LaunchSpec, catalog_dir: str | None) -> PlanRequest:
        return cls(
            gpus=list(spec.gpus),
            gpu_count=spec.gpu_count,
            ordered=spec.ordered,
            spot=spec.spot,
            max_price_per_hour=spec.max_price_per_hour,
            min_vram_gb=spec.min_vram_gb,
            clouds=[c.lower() for c in spec.clouds],
            regions=list(spec.regions),
            catalog_dir=catalog_dir,
        )


@dataclass
class PlanResult:
    """Ranked offers plus what SkyPilot's optimizer chose on its own."""

    offers: list[Offer]
    optimizer_choice: Offer | None
    clouds: list[str]


def catalog_clouds(catalog_dir: Path) -> list[str]:
    """Clouds a pinned catalog covers (folders with a vms.csv), sorted."""
    return sorted(p.parent.name for p in catalog_dir.glob("*/vms.csv"))


def resolve_catalog(catalog_dir: str | os.PathLike[str]) -> Path:
    """The v8 folder of a catalog snapshot (accepts DIR or DIR/v8); checks required files."""
    root = Path(catalog_dir).expanduser().resolve()
    if (root / CATALOG_VERSION / "common").is_dir():
        root = root / CATALOG_VERSION
    needed = [root / "common" / "accelerators.csv", root / "common" / "metadata.csv"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ConfigError(
            f"catalog {catalog_dir} is missing {', '.join(missing)}",
            hint="point --catalog at a SkyPilot v8 catalog snapshot (common/, aws/vms.csv, …)",
        )
    if not catalog_clouds(root):
        raise ConfigError(
            f"catalog {catalog_dir} has no <cloud>/vms.csv", hint="add at least one cloud's vms.csv"
        )
    return root


def plan(spec: LaunchSpec, catalog_dir: str | None = None) -> PlanResult:
    """Run the planning worker and return ranked offers; raises translated errors."""
    require_sky()
    if not catalog_dir:  # a live plan: fail in milliseconds when no cloud could be enabled
        from nomad.cloud_access import require_cloud_credentials

        require_cloud_credentials()
    req = PlanRequest.from_spec(spec, catalog_dir)
    if not req.gpus:
        raise ConfigError("infra.gpus is empty", hint="list at least one GPU, e.g. [RTX4090, L40S]")
    with tempfile.TemporaryDirectory(prefix="nomad-plan-") as tmp:
        env = _worker_env(Path(tmp), req)
        out = Path(tmp) / "result.json"
        (Path(tmp) / "request.json").write_text(json.dumps(asdict(req)))
        proc = _run_worker(Path(tmp), out, env)
        if not out.exists():
            tail = proc.stderr.strip().splitlines()[-5:]
            raise BackendError(
                "SkyPilot planning crashed: " + " | ".join(tail), hint="rerun with -vv"
            )
        result = json.loads(out.read_text())
    if "error" in result:
        err = result["error"]
        raise _ERRORS.get(err["kind"], BackendError)(err["message"], hint=err.get("hint"))
    choice = result.get("optimizer_choice")
    return PlanResult(
        offers=[offer_from_json(o) for o in result["offers"]],
        optimizer_choice=offer_from_json(choice) if choice else None,
        clouds=list(result.get("clouds", [])),
    )


def _worker_env(tmp: Path, req: PlanRequest) -> dict[str, str]:
    env = dict(os.environ)
    if req.catalog_dir:
        src = resolve_catalog(req.catalog_dir)
        dst = tmp / ".sky" / "catalogs" / CATALOG_VERSION
        shutil.copytree(src, dst)
        req.catalog_dir = str(dst)
        env["SKY_RUNTIME_DIR"] = str(tmp)
        env["HOME"] = str(tmp)
        env.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")  # offline plan: no telemetry
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def _run_worker(tmp: Path, out: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "nomad.backends.skypilot._plan_worker",
        str(tmp / "request.json"),
        str(out),
    ]
    try:
        return subprocess.run(
            argv, env=env, cwd=tmp, capture_output=True, text=True, timeout=PLAN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise BackendError(
            f"SkyPilot planning took longer than {PLAN_TIMEOUT_S:.0f}s",
            hint="pin a catalog with --catalog to plan offline",
        ) from None


def offers_json(result: PlanResult) -> dict[str, Any]:
    """Stable JSON for ``nomad plan --json``."""
    return {
        "offers": [o.to_json() for o in result.offers],
        "optimizer_choice": result.optimizer_choice.to_json() if result.optimizer_choice else None,
        "clouds": result.clouds,
    }
