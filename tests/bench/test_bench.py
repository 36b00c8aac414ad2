"""nomad bench: stats, JSON results, compare (published speed-up formula), $/image."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.bench import (
    BenchResult,
    WorkflowStats,
    compare,
    gpu_key,
    load_results,
    price_per_image,
    reference_results,
    run_bench,
    speedup_pct,
)
from nomad.errors import UsageError
from nomad.testing.cli import run_nomad
from nomad.testing.comfy import FakeComfy


def _nomad(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run the real entry point (errors → exit codes) in-process; returns (code, out, err)."""
    return run_nomad(tmp_path / "data", *args)


def test_speedup_matches_published_table() -> None:
    """4.92 s → 1.80 s is ~63% (time saved), and the other published rows round as printed."""
    assert round(speedup_pct(4.92, 1.80)) == 63
    rows = compare(reference_results())
    assert {r.workflow: round(r.speedup or 0) for r in rows} == {
        "sd35_large": 33,
        "flux_schnell": 63,
        "flux_dev": 37,
        "wan22_t2v": 40,
        "qwen_image_edit": 54,
    }
    assert speedup_pct(2.0, 3.0) == -50.0


def test_stats() -> None:
    """mean/median/min/max/stdev come from the timed runs only (warm-up excluded)."""
    s = WorkflowStats("w", [2.0, 4.0, 9.0], warmup=[100.0])
    assert (s.mean, s.median, s.min, s.max) == (5.0, 4.0, 2.0, 9.0)
    assert s.to_json()["warmup"] == [100.0] and round(s.stdev, 3) == 3.606


async def test_run_bench_on_double(tmp_path: Path) -> None:
    """run_bench times N runs after warm-up with fixed per-run seeds and records the GPU."""
    async with FakeComfy(gpu_name="NVIDIA GeForce RTX 5090", vram_gb=32) as fc:
        result = await run_bench(
            fc.url, ["flux_schnell", "qwen_image_edit"], runs=3, warmup=1, base_seed=40
        )
        sampler_seeds = [g["31"]["inputs"]["seed"] for g in fc.prompts if "31" in g]
        edit_uploads = len(fc.uploads)
    assert (result.gpu, result.vram_gb, result.source) == (
        "NVIDIA GeForce RTX 5090",
        32.0,
        "measured",
    )
    flux = result.workflows["flux_schnell"]
    assert len(flux.runs) == 3 and len(flux.warmup) == 1 and flux.seeds == [41, 42, 43]
    assert sampler_seeds == [40, 41, 42, 43]
    assert edit_uploads == 1  # the generated input image, uploaded once per content
    path = result.save(tmp_path / "r.json")
    (loaded,) = load_results([path])
    assert loaded.workflows["flux_schnell"].runs == [round(r, 4) for r in flux.runs]
    assert json.loads(path.read_text())["schema"] == "nomad.bench/1"


def test_price_per_image_uses_gpu_and_mean() -> None:
    """$/image = mean seconds x $/hour / 3600 for the matching GPU; unknown GPUs give {}."""
    ref = reference_results()
    per = price_per_image(ref, "RTX4090", 0.72)
    assert per["flux_schnell"] == round(4.92 * 0.72 / 3600, 6)
    assert price_per_image(ref, "NVIDIA GeForce RTX 5090", 1.0)["wan22_t2v"] == round(
        37.15 / 3600, 6
    )
    assert price_per_image(ref, "A100-80GB", 1.0) == {}
    measured = BenchResult(
        "NVIDIA GeForce RTX 4090", 24.0, {"flux_schnell": WorkflowStats("flux_schnell", [3.6])}
    )
    assert price_per_image([*ref, measured], "RTX4090", 1.0)["flux_schnell"] == 0.001
    assert price_per_image([measured, *ref], "RTX4090", 1.0)["flux_schnell"] == 0.001


def test_gpu_key() -> None:
    """GPU names from /system_stats and from SkyPilot offers normalise to the same key."""
    assert gpu_key("NVIDIA GeForce RTX 4090") == gpu_key("RTX4090") == "RTX4090"
    assert gpu_key("NVIDIA A100-SXM4-80GB") == gpu_key("A100-80GB")


def test_load_results_errors(tmp_path: Path) -> None:
    """A file that is not a bench result is an error naming the file."""
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match=r"x\.json: not a nomad bench result"):
        load_results([bad])
    with pytest.raises(UsageError, match="cannot read bench results"):
        load_results([tmp_path / "missing.json"])


def test_cli_bench_run_and_compare(tmp_path: Path) -> None:
    """`bench run` on the double writes JSON; `bench compare` prints speed-ups and $/image."""
    fc = FakeComfy.start_in_thread(gpu_name="NVIDIA GeForce RTX 4090", delay=0.001)
    try:
        code, out, err = _nomad(
            tmp_path,
            "bench",
            "run",
            "flux_schnell",
            "--endpoint",
            fc.url,
            "--runs",
            "2",
            "--out",
            str(tmp_path / "a.json"),
            "--json",
        )
    finally:
        fc.stop()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["gpu"]["name"] == "NVIDIA GeForce RTX 4090"
    assert len(doc["workflows"]["flux_schnell"]["runs"]) == 2
    published = BenchResult(
        "RTX 5090", 32.0, {"flux_schnell": WorkflowStats("flux_schnell", [1.80])}
    )
    published.save(tmp_path / "b.json")
    ref_4090 = BenchResult(
        "RTX 4090", 24.0, {"flux_schnell": WorkflowStats("flux_schnell", [4.92])}
    )
    ref_4090.save(tmp_path / "a2.json")
    code, out, _ = _nomad(
        tmp_path,
        "bench",
        "compare",
        str(tmp_path / "a2.json"),
        str(tmp_path / "b.json"),
        "--price-per-hour",
        "0.69",
        "--price-per-hour",
        "0.89",
        "--json",
    )
    row = json.loads(out)["rows"][0]
    assert code == 0 and round(row["speedup_pct"]) == 63
    assert row["usd_per_image"] == [round(4.92 * 0.69 / 3600, 6), round(1.80 * 0.89 / 3600, 6)]
    code, out, _ = _nomad(
        tmp_path, "bench", "compare", str(tmp_path / "a2.json"), str(tmp_path / "b.json")
    )
    assert code == 0 and "~63%" in out


def test_cli_reference_table(tmp_path: Path) -> None:
    """`bench reference` prints the published table in the published shape."""
    code, out, _ = _nomad(tmp_path, "bench", "reference", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["gpus"] == ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 5090"]
    assert {r["workflow"]: r["seconds"] for r in doc["rows"]}["qwen_image_edit"] == [9.62, 4.44]


async def test_unseeded_workflow_refused(tmp_path: Path) -> None:
    """Benchmarking a workflow without a seed param is refused (ComfyUI would cache every run)."""
    (tmp_path / "inv.json").write_text(
        json.dumps(
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
                },
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "x"},
                },
            }
        )
    )
    (tmp_path / "inv.yaml").write_text("name: inv\n")
    with pytest.raises(UsageError, match="no seed parameter"):
        await run_bench("http://127.0.0.1:9", [str(tmp_path / "inv.yaml")], runs=2)


def test_cpu_only_server_is_reported_as_cpu(tmp_path: Path) -> None:
    """A CPU-only ComfyUI (device "cpu", RAM in the vram fields) benches as "CPU", no VRAM."""
    fc = FakeComfy.start_in_thread(cpu=True)
    try:
        code, out, err = _nomad(
            tmp_path, "bench", "run", "flux_schnell", "--endpoint", fc.url, "--runs", "1",
            "--warmup", "0", "--out", str(tmp_path / "cpu.json"),
        )  # fmt: skip
    finally:
        fc.stop()
    assert code == 0, err
    assert "CPU (no GPU: a CPU-only server)" in out and "cpu (" not in out
    doc = json.loads((tmp_path / "cpu.json").read_text())
    assert doc["gpu"] == {"name": "CPU", "vram_gb": None}
