"""The blog's fleet in one nomad.yaml: rented 2xRTX 5090 over SSH, a local RTX 4090, one cloud.

`nomad plan` lists each with its own GPU and price (the real ssh/local plan code and the real
SkyPilot planner on the pinned catalog), placement picks by $/job, and a launch goes to, and
is found again at, the member that offered it.

Reference Flux schnell figures: RTX 4090 4.92 s, RTX 5090 1.80 s per image.
- SSH 2xRTX 5090 at $0.80/h: 0.80/3600 x 1.80/2 = $0.000200/image
- local RTX 4090 at $0.12/h: 0.12/3600 x 4.92   = $0.000164/image  (wins)
- local RTX 4090 at $0.20/h: 0.20/3600 x 4.92   = $0.000273/image  (the SSH box wins)
- Vast RTX 4090 at $0.40/h (pinned catalog):     $0.000547/image
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad import resources
from nomad.backends import get_backend
from nomad.backends.base import ClusterState, LaunchSpec, Offer
from nomad.backends.fleet import FleetBackend, member_key
from nomad.backends.ssh.backend import pool_offers
from nomad.config.load import load_text
from nomad.config.schema import SSHBackendConfig, SSHHost
from nomad.errors import BackendError, NoCloudAccessError
from nomad.launch import status as launch_status
from nomad.placement import from_config
from nomad.queue.ledger import open_ledger
from nomad.serve.autoscaler import BackendOps
from nomad.testing.backend import FakeBackend
from nomad.testing.cli import run_nomad

IMAGE = "registry.example.com/demo/comfy@sha256:" + "ab" * 32


@pytest.fixture
def catalog_dir() -> Path:
    """The pinned SkyPilot catalog snapshot nomad ships."""
    return resources.catalog_dir()


def _config(tmp_path: Path, local_price: float = 0.12) -> str:
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    return f"""\
project: demo
infra:
  backend: fleet
  fleet: [skypilot, ssh, local]
  gpus: [RTX4090]
  clouds: [vast]
  ssh:
    pool: rented
    hosts:
      - {{ip: 198.51.100.7, identity_file: {key}, gpu: RTX5090, gpu_count: 2, price_per_hour: 0.80}}
  local:
    mode: command
    command: [python, main.py, --port, "{{port}}"]
    gpu_name: RTX4090
    price_per_hour: {local_price}
  placement:
    bench: ["@reference"]
    mix: {{flux_schnell: 1}}
"""


def _row(offers: list[dict], cloud: str) -> dict:
    (row,) = [o for o in offers if o["cloud"] == cloud]
    return row


@pytest.mark.slow
def test_nomad_plan_lists_the_blogs_fleet_each_with_its_own_gpu_and_price(
    tmp_path: Path, catalog_dir: Path
) -> None:
    """`nomad plan --json`: the SSH box as RTX5090x2 at $0.80, the local box as RTX4090 at $0.12, Vast's 4090 from the catalog."""
    (tmp_path / "nomad.yaml").write_text(_config(tmp_path))
    code, out, err = run_nomad(
        tmp_path / "data", "--config", str(tmp_path / "nomad.yaml"),
        "plan", "--json", "--catalog", str(catalog_dir),
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backend"] == "fleet" and doc["skipped"] == []
    ssh, local = _row(doc["offers"], "ssh"), _row(doc["offers"], "local")
    assert (ssh["region"], ssh["gpu"], ssh["gpu_count"], ssh["price_per_hour"]) == (
        "rented", "RTX5090", 2, 0.8,
    )  # fmt: skip
    assert (local["gpu"], local["gpu_count"], local["price_per_hour"]) == ("RTX4090", 1, 0.12)
    vast = [o for o in doc["offers"] if o["cloud"].lower() == "vast"]
    assert vast and all(o["gpu"] == "RTX4090" for o in vast)
    prices = [o["price_per_hour"] for o in doc["offers"]]
    assert prices == sorted(prices)  # one list, cheapest $/hour first


@pytest.mark.slow
def test_nomad_plan_bench_prices_the_two_gpu_box_per_concurrent_job(
    tmp_path: Path, catalog_dir: Path
) -> None:
    """`nomad plan --bench @reference`: the 2x5090 at $0.80/h is $0.000200 per Flux schnell image (both GPUs busy), as `up` ranks it, not $0.000400."""
    (tmp_path / "nomad.yaml").write_text(_config(tmp_path))
    code, out, err = run_nomad(
        tmp_path / "data", "--config", str(tmp_path / "nomad.yaml"),
        "plan", "--json", "--catalog", str(catalog_dir), "--bench", "@reference",
    )  # fmt: skip
    assert code == 0, err
    per = {o["cloud"]: o["price_per_image"]["flux_schnell"] for o in json.loads(out)["offers"]}
    assert per["ssh"] == pytest.approx(0.80 / 3600 * 1.80 / 2, abs=1e-6)
    assert per["local"] == pytest.approx(0.12 / 3600 * 4.92, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("local_price", "winner"), [(0.12, "local"), (0.20, "ssh")])
def test_up_dry_run_picks_across_the_fleet_by_dollars_per_job(
    tmp_path: Path, catalog_dir: Path, local_price: float, winner: str
) -> None:
    """`nomad up --dry-run`: the local 4090 at $0.12/h wins ($0.000164 vs $0.000200/image); at $0.20/h the SSH 2x5090 does."""
    (tmp_path / "nomad.yaml").write_text(_config(tmp_path, local_price))
    code, out, err = run_nomad(
        tmp_path / "data", "--config", str(tmp_path / "nomad.yaml"),
        "up", "--dry-run", "--json", "--catalog", str(catalog_dir), "--image", IMAGE,
    )  # fmt: skip
    assert code == 0, err
    choice = json.loads(out)["placement"]
    first = choice["offers"][0]
    assert first["cloud"] == winner
    per = {o["cloud"]: o["price_per_image"]["flux_schnell"] for o in choice["offers"]}
    assert per["ssh"] == pytest.approx(0.80 / 3600 * 1.80 / 2, abs=1e-6)
    assert per["local"] == pytest.approx(local_price / 3600 * 4.92, abs=1e-6)
    assert per["vast"] == pytest.approx(0.40 / 3600 * 4.92, abs=1e-6)
    assert "/job" in choice["why"]


def test_an_ssh_pool_offers_each_kind_of_box_at_its_own_price() -> None:
    """One pool with a 2xRTX 5090 at $0.80 and an RTX 4090 at $0.12 is two offers, not 'RTX5090 x2 $0.12'."""
    cfg = SSHBackendConfig(
        pool="mixed",
        hosts=[
            SSHHost(ip="198.51.100.7", gpu="RTX5090", gpu_count=2, price_per_hour=0.80),
            SSHHost(ip="198.51.100.8", gpu="RTX4090", price_per_hour=0.12),
            SSHHost(ip="198.51.100.9", gpu="RTX4090", price_per_hour=0.15),
        ],
    )
    offers = pool_offers(cfg, LaunchSpec(cluster_name="c", image_ref=IMAGE, gpus=("L4",)))
    got = [(o.gpu, o.gpu_count, o.price_per_hour) for o in offers]
    # two 4090 hosts: SkyPilot may place on either, so the kind is priced at the dearer one
    assert got == [("RTX4090", 1, 0.15), ("RTX5090", 2, 0.80)]
    assert {member_key(o) for o in offers} == {"ssh/mixed"}


def test_several_pools_are_members_and_pool_names_must_differ(tmp_path: Path) -> None:
    """infra.ssh plus infra.ssh_pools become one member each; a repeated pool name is a config error."""
    cfg = load_text(
        _config(tmp_path)
        + "  ssh_pools:\n    - pool: office\n      hosts: [{ip: 10.0.0.5, gpu: RTX3090, price_per_hour: 0.05}]\n"
    )
    fleet = get_backend(None, cfg, tmp_path)
    assert isinstance(fleet, FleetBackend)
    assert list(fleet.members) == ["skypilot", "ssh/rented", "ssh/office", "local"]
    with pytest.raises(Exception, match="unique"):
        load_text(_config(tmp_path) + "  ssh_pools:\n    - pool: rented\n")


def _fleet(data_dir: Path) -> tuple[FleetBackend, dict[str, FakeBackend]]:
    """Members as FakeBackends that offer what the real ssh/local/cloud members would."""
    fakes = {
        "skypilot": FakeBackend(
            offers=[Offer("vast", "US", "1x-RTX_4090", "RTX4090", 1, 0.40, False)]
        ),
        "ssh/rented": FakeBackend(offers=[Offer("ssh", "rented", None, "RTX5090", 2, 0.80, False)]),
        "local": FakeBackend(
            offers=[Offer("local", "127.0.0.1", "command", "RTX4090", 1, 0.20, False)]
        ),
    }
    return FleetBackend(fakes, data_dir), fakes


def test_autoscaler_launch_goes_to_the_member_and_is_found_again_after_a_restart(
    tmp_path: Path,
) -> None:
    """BackendOps launches the $/job winner (the SSH 2x5090) on its member; a new FleetBackend finds it and tears it down there."""
    cfg = load_text(_config(tmp_path, 0.20))
    fleet, fakes = _fleet(tmp_path)
    spec = LaunchSpec(cluster_name="demo-serve", image_ref=IMAGE, placement=from_config(cfg))
    book = open_ledger(None, tmp_path)
    try:
        ops = BackendOps(fleet, spec, tmp_path, health_timeout_s=None, ledger=book)
        launched = ops.up("demo-serve")
        assert launched.info.offer is not None and member_key(launched.info.offer) == "ssh/rented"
        assert ("launch", "demo-serve") in fakes["ssh/rented"].calls
        assert not [c for c in fakes["local"].calls + fakes["skypilot"].calls if c[0] == "launch"]
        row = book.find_open("demo-serve")
        assert row is not None and row.backend == "fleet" and row.price_per_hour == 0.80

        again, _ = (
            FleetBackend(fleet.members, tmp_path),
            None,
        )  # serve restarted: same members, new object
        assert again.member_of("demo-serve") == "ssh/rented"
        info = again.status("demo-serve")
        assert info.state is ClusterState.UP and info.extra["fleet_member"] == "ssh/rented"
        reports = launch_status(lambda name: again, tmp_path, ledger=book)
        assert [r.info.state for r in reports] == [ClusterState.UP]

        BackendOps(again, spec, tmp_path, health_timeout_s=None, ledger=book).down("demo-serve")
        assert ("teardown", "demo-serve") in fakes["ssh/rented"].calls
        assert not [c for c in fakes["local"].calls if c[0] == "teardown"]
        assert book.find_open("demo-serve") is None
        assert again.member_of("demo-serve") is None  # confirmed gone: record dropped
    finally:
        book.close()


def test_without_a_record_each_member_is_asked_and_an_unanswered_one_is_not_gone(
    tmp_path: Path,
) -> None:
    """A cluster with no fleet record is looked up member by member; if one member cannot answer, the state is an error, never GONE."""
    fleet, fakes = _fleet(tmp_path)
    fakes["local"].set_state("lost-record", ClusterState.UP)
    assert fleet.status("lost-record").extra["fleet_member"] == "local"
    assert fleet.member_of("lost-record") == "local"  # remembered from now on

    class Unreachable(FakeBackend):
        def status(self, cluster_name: str):  # type: ignore[no-untyped-def]
            raise NoCloudAccessError("SkyPilot API server unreachable")

    blind = FleetBackend({"skypilot": Unreachable(), "local": FakeBackend()}, tmp_path / "b")
    with pytest.raises(NoCloudAccessError):
        blind.status("nowhere")
    assert (
        FleetBackend({"local": FakeBackend()}, tmp_path / "c").status("nowhere").state
        is ClusterState.GONE
    )


def test_a_member_that_cannot_plan_is_skipped_and_named(tmp_path: Path) -> None:
    """No cloud credentials: the fleet still plans its SSH and local boxes, and says which member it skipped."""
    fleet, fakes = _fleet(tmp_path)
    fakes["skypilot"].fail_launch = None
    fakes["skypilot"].offers = []
    broken = FakeBackend()
    broken.plan = lambda spec: (_ for _ in ()).throw(NoCloudAccessError("no cloud credentials"))  # type: ignore[method-assign]
    fleet.members["skypilot"] = broken
    offers = fleet.plan(LaunchSpec(cluster_name="c", image_ref=IMAGE))
    assert [member_key(o) for o in offers] == ["local", "ssh/rented"]
    assert fleet.skipped == ["skypilot: no cloud credentials"]
    only_broken = FleetBackend({"skypilot": broken}, tmp_path)
    with pytest.raises(BackendError, match="no fleet member could plan"):
        only_broken.plan(LaunchSpec(cluster_name="c", image_ref=IMAGE))
