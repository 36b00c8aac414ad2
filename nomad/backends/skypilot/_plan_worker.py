"""Subprocess body of :func:`nomad.backends.skypilot.planner.plan` (imports ``sky``).

Usage: ``python -m nomad.backends.skypilot._plan_worker REQUEST.json RESULT.json``.
The parent sets ``SKY_RUNTIME_DIR``/``HOME`` first when a catalog is pinned.
The result goes to a file because SkyPilot prints progress payloads on stdout.
Offers come from ``sky.catalog.list_accelerators`` (every region); the first
offer is the one SkyPilot's own optimizer picks when it passes nomad's filters.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from nomad.backends.base import Offer

# A pinned catalog is an offline plan: nothing may leave the machine. SkyPilot still asks
# the clouds' SDKs (and the `aws` CLI it shells out to) for credentials, and those probe
# the instance metadata address 169.254.169.254; on a CI runner in a cloud that fetches
# the instance's credentials. These switches make boto, the AWS CLI and google-auth skip
# it (HOME is already a private temp dir, so no user config or keys are read either).
OFFLINE_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",  # should anything still ask: loopback discard port
    "GCE_METADATA_IP": "127.0.0.1:9",
    "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
}


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text())
    if req.get("catalog_dir"):
        os.environ.update(OFFLINE_ENV)  # before `sky` (and anything it spawns) is imported
    try:
        result = _plan(req)
    except Exception as exc:  # every failure is reported to the parent as data
        result = {"error": _error(exc)}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


def _plan(req: dict[str, Any]) -> dict[str, Any]:
    import sky.check

    import sky

    clouds = _enable_clouds(sky, req)
    names = [str(c).lower() for c in clouds]
    vram = _vram_table(req.get("catalog_dir"), sky)
    offers = [o for g in req["gpus"] for o in _offers_for(sky, g, req, names, vram)]
    offers.sort(key=lambda o: _rank_key(o, req))
    choice = _optimizer_choice(sky, req, offers, vram)
    if choice is not None:
        match = [o for o in offers if _same(o, choice)]
        if match:
            offers.remove(match[0])
            offers.insert(0, match[0])
    if not offers:
        raise _NoOffer(_no_offer_message(req))
    return {
        "offers": [o.to_json() for o in offers],
        "optimizer_choice": choice.to_json() if choice else None,
        "clouds": names,
    }


def _enable_clouds(sky: Any, req: dict[str, Any]) -> list[Any]:
    """Pinned catalog: enable exactly its clouds (∩ infra.clouds). Else ask SkyPilot (sky check)."""
    from sky.utils import registry

    if req.get("catalog_dir"):
        names = sorted(p.parent.name for p in Path(req["catalog_dir"]).glob("*/vms.csv"))
        if req.get("clouds"):
            names = [n for n in names if n in req["clouds"]]
        clouds = [registry.CLOUD_REGISTRY.from_str(n) for n in names]
        sky.check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: list(clouds)
    else:
        from sky.clouds import cloud as sky_cloud

        clouds = sky.check.get_cached_enabled_clouds_or_refresh(
            sky_cloud.CloudCapability.COMPUTE, raise_if_no_cloud_access=True
        )
        if req.get("clouds"):
            clouds = [c for c in clouds if str(c).lower() in req["clouds"]]
    if not clouds:
        raise _NoCloud("no cloud is enabled for planning")
    return list(clouds)


def _offers_for(
    sky: Any, gpu: str, req: dict[str, Any], clouds: list[str], vram: dict[str, float]
) -> list[Offer]:
    rows = sky.catalog.list_accelerators(
        gpus_only=True,
        name_filter=f"^{gpu}$",
        quantity_filter=req["gpu_count"],
        clouds=clouds,
        case_sensitive=False,
        all_regions=True,
        require_price=True,
    )
    out = []
    for name, infos in rows.items():
        for info in infos:
            offer = _to_offer(info, name, req, vram)
            if offer is not None and _passes(offer, req):
                out.append(offer)
    return out


def _to_offer(info: Any, name: str, req: dict[str, Any], vram: dict[str, float]) -> Offer | None:
    price = info.spot_price if req.get("spot") else info.price
    if price is None or math.isnan(price) or price <= 0:
        return None
    return Offer(
        cloud=str(info.cloud).lower(),
        region=info.region,
        instance_type=info.instance_type,
        gpu=name,
        gpu_count=int(info.accelerator_count),
        price_per_hour=float(price),
        spot=bool(req.get("spot")),
        vram_gb=vram.get(name.upper()),
    )


def _passes(o: Offer, req: dict[str, Any]) -> bool:
    cap, need, regions = (
        req.get("max_price_per_hour"),
        req.get("min_vram_gb"),
        req.get("regions") or [],
    )
    if cap is not None and o.price_per_hour > cap:
        return False
    if need is not None and (o.vram_gb is None or o.vram_gb < need):
        return False
    return not regions or o.region in regions


def _rank_key(o: Offer, req: dict[str, Any]) -> tuple[Any, ...]:
    pref = [g.upper() for g in req["gpus"]].index(o.gpu.upper()) if req.get("ordered") else 0
    return (pref, round(o.price_per_hour, 6), o.cloud, o.region or "", o.instance_type or "")


def _optimizer_choice(
    sky: Any, req: dict[str, Any], offers: list[Offer], vram: dict[str, float]
) -> Offer | None:
    """What SkyPilot's in-process optimizer picks among the GPUs that have offers."""
    gpus = [g for g in req["gpus"] if any(o.gpu.upper() == g.upper() for o in offers)]
    if not gpus:
        return None
    n = req["gpu_count"]
    acc: Any = [f"{g}:{n}" for g in gpus] if req.get("ordered") else {g: n for g in gpus}
    task = sky.Task.from_yaml_config(
        {"resources": {"accelerators": acc, "use_spot": bool(req.get("spot"))}, "run": "true"}
    )
    dag = sky.Dag()
    dag.add(task)
    from sky import optimizer

    optimizer.Optimizer.optimize(dag, minimize=sky.OptimizeTarget.COST, quiet=True)
    best = task.best_resources
    ((name, count),) = best.accelerators.items()
    return Offer(
        cloud=str(best.cloud).lower(),
        region=best.region,
        instance_type=best.instance_type,
        gpu=name,
        gpu_count=int(count),
        price_per_hour=float(best.get_cost(3600)),
        spot=bool(best.use_spot),
        vram_gb=vram.get(name.upper()),
    )


def _same(a: Offer, b: Offer) -> bool:
    return (a.cloud, a.region, a.instance_type, a.gpu.upper(), a.spot) == (
        b.cloud,
        b.region,
        b.instance_type,
        b.gpu.upper(),
        b.spot,
    )


def _vram_table(catalog_dir: str | None, sky: Any) -> dict[str, float]:
    """GPU name → memory GB from common/metadata.csv (pinned catalog or SkyPilot's own)."""
    if catalog_dir:
        path = Path(catalog_dir) / "common" / "metadata.csv"
    else:
        from sky.catalog import common

        path = Path(common.get_catalog_path("common/metadata.csv"))
    if not path.exists():
        return {}
    with path.open(newline="") as fh:
        return {
            r["GPU"].upper(): float(r["MemoryGB"]) for r in csv.DictReader(fh) if r.get("MemoryGB")
        }


def _no_offer_message(req: dict[str, Any]) -> str:
    bits = [f"GPUs {', '.join(req['gpus'])} x{req['gpu_count']}"]
    if req.get("max_price_per_hour") is not None:
        bits.append(f"≤ ${req['max_price_per_hour']}/hour")
    if req.get("min_vram_gb") is not None:
        bits.append(f"≥ {req['min_vram_gb']} GB VRAM")
    if req.get("regions"):
        bits.append(f"regions {', '.join(req['regions'])}")
    if req.get("spot"):
        bits.append("spot")
    return "no offer matches " + ", ".join(bits)


def _no_cloud_hint() -> str:
    from nomad.cloud_access import no_cloud_hint

    return no_cloud_hint()


class _NoOffer(Exception):
    pass


class _NoCloud(Exception):
    pass


def _error(exc: Exception) -> dict[str, str]:
    kind = type(exc).__name__
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else kind
    from nomad.backends.skypilot.errors import is_sky

    if isinstance(exc, _NoOffer) or is_sky(exc, "ResourcesUnavailableError"):
        return {
            "kind": "no_capacity",
            "message": msg,
            "hint": "allow more GPUs/clouds/regions, raise infra.max_price_per_hour or lower min_vram_gb",
        }
    if isinstance(exc, _NoCloud) or is_sky(exc, "NoCloudAccessError"):
        return {
            "kind": "no_cloud_access",
            "message": msg,
            "hint": _no_cloud_hint(),
        }
    return {
        "kind": "backend",
        "message": f"planning failed: {kind}: {msg}",
        "hint": "rerun with -vv",
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
