"""Launches rank by expected $/job: `nomad up --dry-run` (real SkyPilot plan, pinned catalog) and the autoscaler's launch.

Reference figures (Flux schnell): RTX 4090 4.92 s, RTX 5090 1.80 s per image, a 2.73x speed-up.
A 5090 under 2.73x the 4090's price must win; above it the 4090 must.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nomad import resources
from nomad.backends.base import LaunchSpec, Offer
from nomad.config.load import load_text
from nomad.placement import from_config
from nomad.serve.autoscaler import BackendOps
from nomad.testing.backend import FakeBackend
from nomad.testing.cli import run_nomad

IMAGE = "registry.example.com/demo/comfy@sha256:" + "ab" * 32
VAST_4090 = 0.40
CONFIG = """\
project: demo
infra:
  gpus: [RTX4090, RTX5090]
  placement:
    bench: ["@reference"]
    mix: {flux_schnell: 1}
"""


def _catalog(tmp_path: Path, price_5090: float) -> Path:
    """The shipped snapshot plus one Vast RTX 5090 row at ``price_5090``."""
    dst = tmp_path / f"catalog-{price_5090}"
    shutil.copytree(resources.catalog_dir(), dst)
    row = (
        "1x-RTX_5090-32-65536,RTX5090,1,32,64.0,\"{'Gpus': [{'Name': 'RTX5090', 'Count': 1, "
        "'MemoryInfo': {'SizeInMiB': 32607}}], 'TotalGpuMemoryInMiB': 32607}\","
        f'{price_5090:.2f},0.00,"Washington, US, NA"\n'
    )
    with (dst / "v8" / "vast" / "vms.csv").open("a") as fh:
        fh.write(row)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize(("ratio", "winner"), [(2.5, "RTX5090"), (3.0, "RTX4090")])
def test_up_dry_run_picks_by_dollars_per_image(tmp_path: Path, ratio: float, winner: str) -> None:
    """`nomad up --dry-run` with the real planner: the 5090 at 2.5x the 4090's price wins, at 3x it loses; $/image shown for both."""
    (tmp_path / "nomad.yaml").write_text(CONFIG)
    catalog = _catalog(tmp_path, round(VAST_4090 * ratio, 2))
    code, out, err = run_nomad(
        tmp_path / "data", "--config", str(tmp_path / "nomad.yaml"),
        "up", "--dry-run", "--json", "--catalog", str(catalog), "--image", IMAGE,
    )  # fmt: skip
    assert code == 0, err
    choice = json.loads(out)["placement"]
    first = choice["offers"][0]
    assert first["gpu"] == winner
    gpus = {o["gpu"] for o in choice["offers"]}
    assert gpus == {"RTX4090", "RTX5090"}
    for o in choice["offers"]:  # $/image for both GPUs
        assert o["price_per_image"]["flux_schnell"] > 0
    assert "/job" in choice["why"]


def _offer(gpu: str, price: float, count: int = 1) -> Offer:
    return Offer("fake", "r1", f"{gpu}-x{count}", gpu, count, price, False)


@pytest.mark.parametrize(("price_5090", "winner"), [(1.00, "RTX5090"), (1.20, "RTX4090")])
def test_autoscaler_launch_picks_by_dollars_per_image(
    tmp_path: Path, price_5090: float, winner: str
) -> None:
    """The autoscaler's launch path (BackendOps over FakeBackend) launches on the $/image winner."""
    cfg = load_text(CONFIG)
    backend = FakeBackend(offers=[_offer("RTX4090", VAST_4090), _offer("RTX5090", price_5090)])
    spec = LaunchSpec(cluster_name="demo-serve", image_ref=IMAGE, placement=from_config(cfg))
    ops = BackendOps(backend, spec, None, health_timeout_s=None)
    launched = ops.up("demo-serve")
    assert launched.info.offer is not None and launched.info.offer.gpu == winner


def test_two_4090s_beat_a_dearer_5090_per_concurrent_job(tmp_path: Path) -> None:
    """A 2x4090 node at $0.82/h is $0.00056/image with both GPUs busy: cheaper than a 5090 at $1.20/h ($0.0006)."""
    cfg = load_text(CONFIG)
    backend = FakeBackend(offers=[_offer("RTX5090", 1.20), _offer("RTX4090", 0.82, count=2)])
    spec = LaunchSpec(cluster_name="demo-serve", image_ref=IMAGE, placement=from_config(cfg))
    launched = BackendOps(backend, spec, None, health_timeout_s=None).up("demo-serve")
    assert launched.info.offer is not None
    assert (launched.info.offer.gpu, launched.info.offer.gpu_count) == ("RTX4090", 2)


def test_without_benchmarks_the_backend_order_stands(tmp_path: Path) -> None:
    """No placement configured: offers keep the backend's $/hour order (and say so)."""
    from nomad.placement import order_offers

    offers = [_offer("RTX4090", 0.40), _offer("RTX5090", 1.00)]
    ordered, why = order_offers(offers, from_config(load_text("project: demo\n")))
    assert [o.gpu for o in ordered] == ["RTX4090", "RTX5090"]
    assert "$/hour" in why
