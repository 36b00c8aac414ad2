"""Expected $ per job and stop-vs-down: the money rules, checked against hand arithmetic."""

from __future__ import annotations

import pytest

from nomad.placement import Candidate, WakeModel, explain, rank, stop_or_down, usd_per_job

# The published Flux schnell figures (nomad.bench.reference): 4090 4.92 s, 5090 1.80 s; ratio 2.733.
T4090 = {"flux_schnell": 4.92}
T5090 = {"flux_schnell": 1.80}
MIX = {"flux_schnell": 1.0}


def test_5090_wins_below_the_speed_ratio_and_loses_above_it() -> None:
    """At 2.6x the 4090's price the 5090 is cheaper per image; at 2.8x the 4090 is."""
    c4090 = Candidate("vast-4090", "RTX 4090", 0.40, seconds=T4090)
    cheap = Candidate("vast-5090", "RTX 5090", 0.40 * 2.6, seconds=T5090)
    dear = Candidate("vast-5090", "RTX 5090", 0.40 * 2.8, seconds=T5090)
    assert rank([c4090, cheap], MIX)[0].candidate.gpu == "RTX 5090"
    assert rank([c4090, dear], MIX)[0].candidate.gpu == "RTX 4090"


def test_multi_gpu_node_is_priced_per_concurrent_job() -> None:
    """2x4090 at $0.80/h: $0.80 x 4.92 s / 2 / 3600 = $0.000547 per image (not $0.00109)."""
    two = Candidate("box", "RTX 4090", 0.80, gpus=2, seconds=T4090)
    assert usd_per_job(two, 4.92, WakeModel()) == pytest.approx(0.80 * 4.92 / 2 / 3600)


def test_wake_cost_is_amortised_over_jobs_per_wake() -> None:
    """$3.60/h, 2 s/job, 100 s start + 200 s idle over 30 jobs: 0.001 x (2 + 10) = $0.012/job."""
    c = Candidate("x", "G", 3.6, seconds={"w": 2.0})
    wake = WakeModel(cold_start_seconds=100, idle_tail_seconds=200, jobs_per_wake=30)
    assert usd_per_job(c, 2.0, wake) == pytest.approx(0.012)
    assert "÷ 30 jobs/wake" in rank([c], {"w": 1}, wake)[0].basis


def test_few_jobs_per_wake_favour_the_cheaper_hour() -> None:
    """With 2 jobs per wake the idle tail dominates: the 4090 at $0.40 beats the 5090 at $0.89."""
    c4090 = Candidate("a", "RTX 4090", 0.40, seconds=T4090)
    c5090 = Candidate("b", "RTX 5090", 0.89, seconds=T5090)
    assert rank([c4090, c5090], MIX)[0].candidate.gpu == "RTX 5090"
    wake = WakeModel(cold_start_seconds=120, idle_tail_seconds=600, jobs_per_wake=2)
    assert rank([c4090, c5090], MIX, wake)[0].candidate.gpu == "RTX 4090"


def test_candidates_without_timings_come_last_by_price() -> None:
    """An H100 with no benchmark is listed after benchmarked offers, and says why."""
    h100 = Candidate("h", "H100", 0.10)
    c4090 = Candidate("a", "RTX 4090", 0.40, seconds=T4090)
    ranked = rank([h100, c4090], MIX)
    assert [r.candidate.gpu for r in ranked] == ["RTX 4090", "H100"]
    assert ranked[1].usd_per_job is None and "no benchmark" in ranked[1].basis
    assert explain(ranked).startswith("a: $0.000547/job")


def test_mix_weights_workflows() -> None:
    """3 parts flux_schnell (2 s) + 1 part wan (10 s) = 4 s per job."""
    c = Candidate("x", "G", 3.6, seconds={"flux_schnell": 2.0, "wan": 10.0})
    r = rank([c], {"flux_schnell": 3, "wan": 1})[0]
    assert r.seconds_per_job == pytest.approx(4.0)


def test_stop_vs_down_at_break_even() -> None:
    """40 GB at $0.09/GB-month for 30 days = $3.60 = 1 h of re-pull at $3.60/h: equal → down; a second less gap → stop."""
    base = dict(disk_gb=40, storage_usd_per_gb_month=0.09, repull_seconds=3600, price_per_hour=3.6)
    even = stop_or_down(idle_gap_seconds=30 * 86400, **base)  # type: ignore[arg-type]
    assert even.keep_cost == pytest.approx(3.6) and even.repull_cost == pytest.approx(3.6)
    assert even.action == "down"
    assert stop_or_down(idle_gap_seconds=30 * 86400 - 60, **base).action == "stop"  # type: ignore[arg-type]
    assert stop_or_down(idle_gap_seconds=30 * 86400 + 60, **base).action == "down"  # type: ignore[arg-type]


def test_stop_vs_down_can_be_forced_and_values_wait() -> None:
    """Config forces either; valuing users' wait tips a down into a stop."""
    base = dict(disk_gb=40, storage_usd_per_gb_month=0.09, repull_seconds=300, price_per_hour=0.4)
    night = 12 * 3600
    assert stop_or_down(idle_gap_seconds=night, **base).action == "down"  # type: ignore[arg-type]
    assert stop_or_down(idle_gap_seconds=night, wait_usd_per_hour=5.0, **base).action == "stop"  # type: ignore[arg-type]
    forced = stop_or_down(idle_gap_seconds=night, force="stop", **base)  # type: ignore[arg-type]
    assert forced.action == "stop" and "forced" in forced.reason
