"""nomad.launch against FakeBackend: up/status/down state, retries, preemption, spend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nomad import launch
from nomad.backends import state
from nomad.backends.base import ClusterState, Offer
from nomad.backends.local.process import free_port
from nomad.errors import BudgetError, ClusterNotFoundError, NoCapacityError, QuotaError, UsageError
from nomad.testing.backend import FakeBackend
from nomad.testing.comfy import FakeComfy
from tests.launch.conftest import make_spec

A = Offer("vast", "Texas", "1x-a", "RTX4090", 1, 0.40, False, 24.0)
B = Offer("runpod", "US", "1x-b", "L4", 1, 0.43, False, 24.0)
C = Offer("aws", "us-east-1", "g6", "L4", 1, 0.80, True, 24.0)


class Clock:
    """An injected wall clock: tests move time, nothing sleeps."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfy]:
    """One ComfyUI protocol double on loopback, answering /system_stats."""
    fc = FakeComfy.start_in_thread()
    yield fc
    fc.stop()


def _fake(comfy: FakeComfy, **kw: object) -> FakeBackend:
    return FakeBackend(endpoints=[comfy.url], offers=[A, B, C], **kw)  # type: ignore[arg-type]


def test_up_waits_for_health_records_state_and_status_reports_spend(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    """up launches the cheapest offer, checks /system_stats, records it; status shows uptime and spend."""
    clock = Clock()
    fake = _fake(comfy, clock=clock)
    report = launch.up(fake, make_spec(), tmp_path, clock=clock, health_timeout_s=5)
    assert report.info.state == ClusterState.UP and report.info.offer == A
    assert state.current_endpoints(tmp_path) == [comfy.url]
    clock.t += 1800
    (st,) = launch.status(lambda _b: fake, tmp_path, clock=clock)
    assert st.info.state == ClusterState.UP
    assert st.uptime_s == pytest.approx(1800) and st.spend_usd == pytest.approx(0.20)


def test_up_is_idempotent_when_already_up(comfy: FakeComfy, tmp_path: Path) -> None:
    """A second up on a live cluster launches nothing."""
    fake = _fake(comfy)
    launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    assert [c for c in fake.calls if c[0] == "launch"] == [("launch", "nomad-test")]


def test_up_retries_the_next_offer_after_capacity_and_quota_errors(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    """No capacity on A and a quota refusal on B ⇒ the cluster comes up on C."""
    fake = _fake(comfy)
    fake.script_launches([NoCapacityError("sold out"), QuotaError("quota 0"), None])
    events: list[str] = []
    report = launch.up(fake, make_spec(), tmp_path, events=events.append, health_timeout_s=5)
    assert report.info.offer == C and len(report.attempts) == 2
    assert sum("trying the next offer" in e for e in events) == 2


def test_all_offers_failing_raises_and_records_nothing(comfy: FakeComfy, tmp_path: Path) -> None:
    """Every offer refusing ⇒ NoCapacityError listing each attempt; no state is written."""
    fake = _fake(comfy, fail_launch=NoCapacityError("sold out"))
    with pytest.raises(NoCapacityError, match="3 offer") as info:
        launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    assert "vast/Texas" in info.value.message and info.value.hint
    assert state.load_all(tmp_path) == []


def test_unhealthy_endpoint_is_torn_down_then_next_offer_tried(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    """An endpoint that never answers is torn down (no paid zombie) and the next offer is tried."""
    dead = f"http://127.0.0.1:{free_port()}"
    fake = FakeBackend(endpoints=[dead], offers=[A])
    with pytest.raises(NoCapacityError, match="system_stats"):
        launch.up(fake, make_spec(), tmp_path, health_timeout_s=0)
    assert ("teardown", "nomad-test") in fake.calls
    assert fake.status("nomad-test").state == ClusterState.GONE


def test_preempted_and_failed_clusters_are_reported(comfy: FakeComfy, tmp_path: Path) -> None:
    """Provider-reported preemption shows as PREEMPTED; a vanished spot cluster too; on-demand ⇒ FAILED."""
    fake = _fake(comfy)
    launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    fake.set_state("nomad-test", ClusterState.PREEMPTED)
    (st,) = launch.status(lambda _b: fake, tmp_path)
    assert st.info.state == ClusterState.PREEMPTED and "reclaimed" in (st.info.detail or "")
    assert st.to_json()["ledger_state"] == "lost" and state.load(tmp_path, "nomad-test") is None

    spot = FakeBackend(endpoints=[comfy.url], offers=[C])
    launch.up(spot, make_spec(cluster_name="spotty"), tmp_path, health_timeout_s=5)
    spot.clusters.clear()  # the provider lost it
    ondemand = FakeBackend(endpoints=[comfy.url], offers=[B])
    launch.up(ondemand, make_spec(cluster_name="steady"), tmp_path, health_timeout_s=5)
    ondemand.clusters.clear()
    (s1,) = launch.status(lambda _b: spot, tmp_path, "spotty")
    (s2,) = launch.status(lambda _b: ondemand, tmp_path, "steady")
    assert s1.info.state == ClusterState.PREEMPTED and s2.info.state == ClusterState.FAILED


def test_up_after_preemption_tries_another_offer_first(comfy: FakeComfy, tmp_path: Path) -> None:
    """The offer that was preempted goes to the back of the line on the next up."""
    fake = _fake(comfy)
    launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    fake.set_state("nomad-test", ClusterState.PREEMPTED)
    launch.status(lambda _b: fake, tmp_path)
    report = launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    assert report.info.offer == B


def test_down_reports_time_and_spend_and_is_idempotent(comfy: FakeComfy, tmp_path: Path) -> None:
    """down tears down, forgets the record and reports uptime times $/hour; a second down is fine."""
    clock = Clock()
    fake = _fake(comfy, clock=clock)
    launch.up(fake, make_spec(), tmp_path, clock=clock, health_timeout_s=5)
    clock.t += 7200
    report = launch.down(fake, tmp_path, "nomad-test", clock=clock)
    assert report.uptime_s == pytest.approx(7200) and report.spend_usd == pytest.approx(0.80)
    assert state.load_all(tmp_path) == [] and fake.status("nomad-test").state == ClusterState.GONE
    again = launch.down(fake, tmp_path, "nomad-test", clock=clock)
    assert again.uptime_s is None and again.info.state == ClusterState.GONE


def test_status_of_unknown_cluster_is_not_found(tmp_path: Path) -> None:
    """Asking for a cluster nomad never recorded is ClusterNotFoundError with a hint."""
    with pytest.raises(ClusterNotFoundError):
        launch.status(lambda _b: FakeBackend(), tmp_path, "nope")


def test_spec_from_config_uses_the_last_push(tmp_path: Path) -> None:
    """The LaunchSpec pins the last pushed digest, sizes the disk from it and carries credentials."""
    import json

    from nomad.config.load import load_text

    (tmp_path / "images").mkdir()
    digest = "sha256:" + "cd" * 32
    (tmp_path / "images" / "last_push.json").write_text(
        json.dumps(
            {
                "ref": f"reg.example.com/acme/comfy@{digest}",
                "registry": "reg.example.com",
                "repository": "acme/comfy",
                "digest": digest,
                "size_bytes": 30 * 10**9,
            }
        )
    )
    cfg = load_text(
        "project: acme\nregistry: {username: u, password: p}\ninfra: {gpus: [L4], idle_minutes: 7}\n"
    )
    spec = launch.spec_from_config(cfg, tmp_path)
    assert spec.image_ref == f"reg.example.com/acme/comfy@{digest}" and spec.disk_gb == 90
    assert (spec.registry_server, spec.registry_username, spec.registry_password) == (
        "reg.example.com",
        "u",
        "p",
    )
    assert spec.cluster_name == "nomad-acme" and spec.gpus == ("L4",)
    assert spec.idle_minutes == 7  # serve's window; each backend adds the node margin


def test_plan_ranks_by_price_per_image_with_benchmarks(tmp_path: Path) -> None:
    """With published timings, a pricier-per-hour RTX 5090 beats a cheaper RTX 4090 per Flux image."""
    r4090 = Offer("vast", "WA", "1x-4090", "RTX4090", 1, 0.40, False, 24.0)
    r5090 = Offer("runpod", "US", "1x-5090", "RTX5090", 1, 0.90, False, 32.0)
    h100 = Offer("lambda", "us-east-1", "1x-h100", "H100", 1, 2.49, False, 80.0)
    fake = FakeBackend(offers=[r4090, r5090, h100])
    offers = launch.plan(
        fake, make_spec(), bench_paths=["@reference"], rank_workflow="flux_schnell"
    )
    assert [o.gpu for o in offers] == ["RTX5090", "RTX4090", "H100"]
    assert offers[0].price_per_image["flux_schnell"] < offers[1].price_per_image["flux_schnell"]
    assert offers[2].price_per_image == {}
    with pytest.raises(UsageError, match="no benchmark"):
        launch.plan(fake, make_spec(), bench_paths=["@reference"], rank_workflow="nope")


def test_up_never_launches_above_the_price_cap(tmp_path: Path) -> None:
    """A backend whose plan ignores the cap (local box at $3/h) still never launches above it."""
    from nomad.backends.local import LocalBackend
    from nomad.config.schema import LocalBackendConfig

    box = LocalBackend(
        LocalBackendConfig(mode="command", command=["true"], price_per_hour=3.0), tmp_path
    )
    with pytest.raises(BudgetError, match=r"\$3.00/hour"):
        launch.up(box, make_spec(max_price_per_hour=1.0), tmp_path, health_timeout_s=1)
    assert not (tmp_path / "local").exists() and state.load_all(tmp_path) == []


def test_status_includes_queue_summary_when_serve_provides_it(
    comfy: FakeComfy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue hook calls nomad.serve.summary.queue_summary(config, data_dir) and attaches its dict."""
    import nomad.serve.summary as summary
    from nomad.config.schema import NomadConfig

    monkeypatch.setattr(summary, "queue_summary", lambda cfg, d: {"queued": 3, "running": 1})
    fake = _fake(comfy)
    launch.up(fake, make_spec(), tmp_path, health_timeout_s=5)
    (st,) = launch.status(lambda _b: fake, tmp_path, config=NomadConfig())
    assert st.queue == {"queued": 3, "running": 1} and st.to_json()["queue"]["queued"] == 3


def test_budget_up_at_1_per_hour_down_then_up_past_the_budget_is_refused(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    """Way 7: up at $1/h for an hour, down, up again with a $1 budget ⇒ refused, today's spend shown."""
    from nomad.config.schema import NomadConfig
    from nomad.queue.ledger import open_ledger

    cfg = NomadConfig.model_validate({"infra": {"daily_budget": 1.0}})
    clock = Clock(20_000 * 86400.0 + 2 * 3600)  # 02:00 UTC
    fake = FakeBackend(endpoints=[comfy.url], price_per_hour=1.0, clock=clock)
    book = open_ledger(cfg, tmp_path, clock=clock)

    def guard() -> None:
        launch.check_daily_budget(cfg, tmp_path, clock=clock)

    launch.up(
        fake, make_spec(), tmp_path, clock=clock, health_timeout_s=5, guard=guard, ledger=book
    )
    clock.t += 3600
    launch.down(fake, tmp_path, "nomad-test", clock=clock, ledger=book)
    assert launch.spend_today(cfg, tmp_path, clock=clock) == pytest.approx(1.0)
    with pytest.raises(BudgetError, match=r"daily budget \$1\.00 reached \(\$1\.00 spent today\)"):
        launch.up(
            fake, make_spec(), tmp_path, clock=clock, health_timeout_s=5, guard=guard, ledger=book
        )
    assert [c for c in fake.calls if c[0] == "launch"] == [("launch", "nomad-test")]
    book.close()


def test_spend_counts_autostopped_clusters_and_only_todays_part(
    comfy: FakeComfy, tmp_path: Path
) -> None:
    """A cluster up since yesterday counts from 00:00; one that autostopped keeps its spend after status closes it."""
    from nomad.config.schema import NomadConfig
    from nomad.queue.ledger import open_ledger

    cfg = NomadConfig()
    day = 20_000 * 86400.0
    clock = Clock(day - 3600)  # 23:00 UTC yesterday
    fake = FakeBackend(endpoints=[comfy.url], price_per_hour=0.25, clock=clock)
    book = open_ledger(cfg, tmp_path, clock=clock)
    launch.up(fake, make_spec(), tmp_path, clock=clock, health_timeout_s=5, ledger=book)
    clock.t = day + 2 * 3600  # 02:00 today: two hours count today
    assert launch.spend_today(cfg, tmp_path, clock=clock) == pytest.approx(0.5)
    fake.clusters.clear()  # the node's watchdog + autostop took it down behind nomad's back
    (st,) = launch.status(lambda _b: fake, tmp_path, clock=clock, ledger=book)
    assert st.to_json()["ledger_state"] == "gone" and book.open_rows() == []
    clock.t += 3600  # an hour later nothing more accrues, and nothing was forgotten
    assert launch.spend_today(cfg, tmp_path, clock=clock) == pytest.approx(0.5)
    book.close()
