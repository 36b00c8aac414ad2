"""`nomad plan`: SkyPilot's real catalogs + optimizer, offline, against the pinned snapshot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nomad.backends.skypilot._import import sky_available
from nomad.backends.skypilot.planner import plan
from nomad.cli.main import cli
from nomad.errors import ConfigError, NoCapacityError
from tests.launch.conftest import make_spec

# never `import sky` at collection: the in-process fixture must set SKY_RUNTIME_DIR first
pytestmark = pytest.mark.skipif(not sky_available(), reason="SkyPilot not installed")


def _row(o: object) -> tuple[str, str | None, str | None, str, float]:
    return (o.cloud, o.region, o.instance_type, o.gpu, o.price_per_hour)  # type: ignore[attr-defined]


def test_any_of_picks_the_cheapest_offer(catalog_dir: Path) -> None:
    """Any-of: SkyPilot's optimizer choice is the cheapest row, and rows are sorted by $/hour."""
    result = plan(make_spec(), str(catalog_dir))
    first = result.offers[0]
    assert _row(first) == ("vast", "Washington, US, NA", "1x-RTX_4090-32-65536", "RTX4090", 0.40)
    assert result.optimizer_choice is not None and _row(result.optimizer_choice) == _row(first)
    prices = [o.price_per_hour for o in result.offers]
    assert prices == sorted(prices)
    assert {o.gpu for o in result.offers} == {"RTX4090", "L4", "L40S", "A100-80GB", "H100"}
    assert {o.cloud for o in result.offers} == {"aws", "gcp", "lambda", "runpod", "vast"}


def test_max_price_and_min_vram_are_respected(catalog_dir: Path) -> None:
    """≤ $1/hour and ≥ 40 GB VRAM leaves exactly the two L40S rows under a dollar."""
    result = plan(make_spec(max_price_per_hour=1.0, min_vram_gb=40), str(catalog_dir))
    assert [_row(o) for o in result.offers] == [
        ("vast", "Texas, US, NA", "1x-L40S-32-65536", "L40S", 0.75),
        ("runpod", "US", "1x_L40S_SECURE", "L40S", 0.86),
    ]
    assert all(o.vram_gb == 48.0 for o in result.offers)


def test_ordered_preference_keeps_the_documented_order(catalog_dir: Path) -> None:
    """Ordered [H100, L4]: every H100 row (cheapest first) before any L4 row, as the optimizer picks."""
    result = plan(make_spec(gpus=("H100", "L4"), ordered=True), str(catalog_dir))
    gpus = [o.gpu for o in result.offers]
    assert gpus == ["H100"] * 4 + ["L4"] * 4
    assert _row(result.offers[0]) == ("vast", "Texas, US, NA", "1x-H100_SXM-32-65536", "H100", 1.87)
    assert result.optimizer_choice is not None and result.optimizer_choice.gpu == "H100"


def test_spot_prices_and_region_filter(catalog_dir: Path) -> None:
    """Spot uses spot prices; regions restrict rows; two GPUs per node match 2x instances only."""
    result = plan(make_spec(spot=True, regions=("us-east-1",)), str(catalog_dir))
    assert _row(result.offers[0]) == ("aws", "us-east-1", "g6.xlarge", "L4", 0.3291)
    assert all(o.spot and o.region == "us-east-1" for o in result.offers)
    two = plan(make_spec(gpu_count=2, gpus=("RTX4090",)), str(catalog_dir))
    assert [(o.cloud, o.gpu_count, o.price_per_hour) for o in two.offers] == [
        ("vast", 2, 0.82),
        ("runpod", 2, 1.38),
    ]


def test_nothing_fits_is_no_capacity_naming_the_limits(catalog_dir: Path) -> None:
    """No row under the cap ⇒ NoCapacityError that says which limits excluded everything."""
    with pytest.raises(NoCapacityError, match=r"≤ \$0.1/hour") as info:
        plan(make_spec(max_price_per_hour=0.1), str(catalog_dir))
    assert info.value.hint


def test_bad_catalog_dir_is_a_config_error(tmp_path: Path) -> None:
    """A folder without common/*.csv is refused before SkyPilot is started."""
    with pytest.raises(ConfigError, match="missing"):
        plan(make_spec(), str(tmp_path))


def test_cli_plan_json_is_stable(catalog_dir: Path, tmp_path: Path) -> None:
    """`nomad plan --json` twice gives identical, sorted JSON with the documented fields."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text("infra:\n  gpus: [L4, RTX4090]\n  max_price_per_hour: 0.7\n")
    args = [
        "-c",
        str(cfg),
        "--data-dir",
        str(tmp_path / "d"),
        "plan",
        "--catalog",
        str(catalog_dir),
        "--json",
    ]
    first = CliRunner().invoke(cli, args)
    second = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    data = json.loads(first.output)
    assert list(data) == ["backend", "offers", "optimizer_choice", "ordered", "skipped"]
    assert list(data["offers"][0]) == sorted(data["offers"][0])
    assert [(o["cloud"], o["gpu"], o["price_per_hour"]) for o in data["offers"]] == [
        ("vast", "RTX4090", 0.4),
        ("runpod", "L4", 0.43),
        ("runpod", "L4", 0.45),
        ("runpod", "RTX4090", 0.69),
    ]
