"""`nomad simulate`: traces small enough to compute by hand, generators, the CLI and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.errors import UsageError
from nomad.simulate import Arrival, SimOffer, Strategy, day_night, load_csv, simulate
from nomad.testing.cli import run_nomad

# $3.60/h is $0.001 per second: every cost below is billed seconds / 1000.
OFFER = SimOffer("RTX 5090", 3.6)
RUN = {"flux_schnell": 10.0}


def run(arrivals: list[Arrival], strategy: Strategy, horizon: float = 1000.0, **kw: object):  # type: ignore[no-untyped-def]
    return simulate(
        arrivals,
        strategy=strategy,
        offer=kw.pop("offer", OFFER),  # type: ignore[arg-type]
        run_seconds=RUN,
        cold_start_seconds=100.0,
        horizon_seconds=horizon,
    )


def test_one_job_on_an_empty_cluster_by_hand() -> None:
    """Up at 0, ready at 100 (cold start), job 100-110, idle 60 s → draining at 170, 10 % drain (6 s) → down at 176."""
    r = run([Arrival(0.0, "flux_schnell")], Strategy.idle(1))
    assert r.wakes == 1
    assert r.waits == [100.0]
    assert r.node_hours == pytest.approx(176 / 3600)
    assert r.cost == pytest.approx(0.176)
    assert r.gpu_hours_busy == pytest.approx(10 / 3600)


def test_a_job_inside_the_idle_window_reuses_the_warm_cluster() -> None:
    """A second job at 150 s finds the GPU warm (wait 0); the idle clock restarts at 160 → down at 226."""
    r = run([Arrival(0.0, "flux_schnell"), Arrival(150.0, "flux_schnell")], Strategy.idle(1))
    assert r.wakes == 1
    assert r.waits == [100.0, 0.0]
    assert r.cost == pytest.approx(0.226)


def test_a_job_after_teardown_pays_a_second_wake() -> None:
    """A job at 500 s (cluster down at 176) wakes it again: 100 s wait, billed 176 + 176 s."""
    r = run([Arrival(0.0, "flux_schnell"), Arrival(500.0, "flux_schnell")], Strategy.idle(1))
    assert r.wakes == 2
    assert r.waits == [100.0, 100.0]
    assert r.cost == pytest.approx(0.352)
    assert r.wait_percentile(50) == 100.0


def test_always_on_bills_the_horizon_and_queues_fifo() -> None:
    """Always on: 1000 s billed at $0.001/s, two jobs 1 s apart on one GPU wait 0 and 9 s."""
    r = run([Arrival(0.0, "flux_schnell"), Arrival(1.0, "flux_schnell")], Strategy.always_on())
    assert r.cost == pytest.approx(1.0)
    assert r.waits == [0.0, 9.0]
    assert r.wakes == 0


def test_two_gpus_run_two_jobs_at_once() -> None:
    """On a 2-GPU node two simultaneous jobs both start at once (always on: both waits 0)."""
    two = SimOffer("RTX 4090", 3.6, gpus=2)
    r = run(
        [Arrival(0.0, "flux_schnell"), Arrival(0.0, "flux_schnell")],
        Strategy.always_on(),
        offer=two,
    )
    assert r.waits == [0.0, 0.0]
    assert r.gpu_hours_billed == pytest.approx(2 * 1000 / 3600)


def test_batch_window_holds_requests_until_it_opens() -> None:
    """A request at 01:00 with a 02-05 h window starts at 02:00 + cold start: wait 3600 + 100 s."""
    r = run([Arrival(3600.0, "flux_schnell")], Strategy.batch_window(2, 5), horizon=86400.0)
    assert r.waits == [3700.0]
    assert r.wakes == 1


def test_unknown_workflow_is_refused() -> None:
    """A trace workflow with no run time is an error, not a silent zero."""
    with pytest.raises(ValueError, match="no run time for workflow"):
        run([Arrival(0.0, "wan22_t2v")], Strategy.idle(1))


def test_day_night_trace_is_reproducible_and_follows_the_sine() -> None:
    """Same seed, same trace; the busy half of the day (peak 14 h) gets most requests."""
    a = day_night(hours=24, peak_per_hour=100, trough_per_hour=0, workflow="w", seed=7)
    b = day_night(hours=24, peak_per_hour=100, trough_per_hour=0, workflow="w", seed=7)
    assert a == b
    # Expected 1200 (mean rate 50/h): a Poisson count stays within ±6 sigma (≈ ±210).
    assert 990 < len(a) < 1410
    day = sum(1 for x in a if 8 * 3600 <= x.at < 20 * 3600)
    assert day > 0.75 * len(a)  # ∫ over 8-20 h of the sine is ≈ 82 % of the total


def test_csv_trace_with_header_iso_times_and_a_bad_row(tmp_path: Path) -> None:
    """Header skipped, ISO times made relative, a bad row named by file:line."""
    good = tmp_path / "t.csv"
    good.write_text("time,workflow\n2026-11-30T10:00:05Z,flux_dev\n2026-11-30T10:00:00Z\n")
    got = load_csv(good, "flux_schnell")
    assert got == [Arrival(0.0, "flux_schnell"), Arrival(5.0, "flux_dev")]
    bad = tmp_path / "bad.csv"
    bad.write_text("0\nsoon\n")
    with pytest.raises(UsageError, match=r"bad.csv:2: not a time"):
        load_csv(bad, "w")


def test_cli_json_and_report_files(tmp_path: Path) -> None:
    """The real entry point: --json compares strategies; --plot writes a PNG, --html embeds it."""
    pytest.importorskip("matplotlib")
    png, page = tmp_path / "c.png", tmp_path / "r.html"
    code, out, err = run_nomad(
        tmp_path,
        "simulate",
        "--day-night",
        "30,1",
        "--hours",
        "6",
        "--offer",
        "RTX 5090=0.89",
        "--idle",
        "2,10",
        "--window",
        "2-5",
        "--json",
        "--plot",
        str(png),
        "--html",
        str(page),
    )
    assert code == 0, err
    doc = json.loads(out)
    names = [r["strategy"] for r in doc["results"]]
    assert names == ["always on", "idle 2 min", "idle 10 min", "window 02–05 h"]
    always, idle2 = doc["results"][0], doc["results"][1]
    assert always["cost_usd"] == pytest.approx(0.89 * 6, rel=1e-3)
    assert idle2["cost_usd"] < always["cost_usd"]
    assert doc["assumptions"]["seconds per job"] == {
        "flux_schnell": 1.8
    }  # the published 5090 figure
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in page.read_text()


def test_cli_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    """A malformed offer, a missing trace, an unbenchmarked GPU: exit 2 with one line, no traceback."""
    cases = [
        (("--day-night", "30,1", "--offer", "RTX 5090"), "GPU=PRICE"),
        (("--offer", "RTX 5090=1"), "exactly one of"),
        (("--bursts", "3,5", "--offer", "H100=2.5"), "no timing for flux_schnell on H100"),
    ]
    for args, expected in cases:
        code, _, err = run_nomad(tmp_path, "simulate", *args)
        assert code == 2 and expected in err and "Traceback" not in err
