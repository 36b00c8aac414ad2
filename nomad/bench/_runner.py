"""Run workflows N times against one endpoint and collect per-run seconds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from nomad.bench._results import BenchResult, WorkflowStats
from nomad.errors import UsageError

# (workflow, run index, is_warmup, seconds) after each run; for progress display
OnRun = Callable[[str, int, bool, float], None]


async def run_bench(
    endpoint: str,
    workflows: Iterable[str],
    *,
    runs: int = 5,
    warmup: int = 1,
    base_seed: int = 1000,
    values: Mapping[str, str] | None = None,
    image: bytes | None = None,
    extra_dirs: Iterable[str | Path] = (),
    proxy: str | None = None,
    timeout: float | None = None,
    on_run: OnRun | None = None,
) -> BenchResult:
    """Benchmark ``workflows`` on ``endpoint``.

    Run ``i`` uses seed ``base_seed + i`` — fixed, so a rerun repeats the same
    work, and different per run, so ComfyUI's cache never turns a run into a
    no-op. Warm-up runs (model loading) are recorded but excluded from stats.
    The measure is ComfyUI execution time, like the published figures.
    """
    from nomad.bench._png import gradient_png
    from nomad.comfy import ComfyClient
    from nomad.workflows import load_workflow

    if runs < 1 or warmup < 0:
        raise UsageError(f"need runs ≥ 1 and warmup ≥ 0 (got runs={runs}, warmup={warmup})")
    names = list(workflows)
    loaded = [load_workflow(n, extra_dirs) for n in names]  # fail fast, before any GPU time
    unseeded = [wf.name for wf in loaded if "seed" not in wf.params]
    if unseeded and runs + warmup > 1:
        raise UsageError(
            f"workflow(s) {', '.join(unseeded)} have no seed parameter: repeated runs would be "
            "answered from ComfyUI's cache and time nothing",
            hint="add a `seed` param to the binding (or bench with --runs 1 --warmup 0)",
        )
    stats: dict[str, WorkflowStats] = {}
    async with ComfyClient(endpoint, proxy=proxy) as client:
        health = await client.health()
        for wf in loaded:
            images = {"image": image or gradient_png()} if "image" in wf.params else None
            timed: list[float] = []
            totals: list[float] = []
            seeds: list[int] = []
            params = {}
            for i in range(warmup + runs):
                seed = {"seed": base_seed + i} if "seed" in wf.params else {}
                bound = wf.bind({**(values or {}), **seed}, images)
                result = await client.run(bound.graph, inputs=bound.inputs, timeout=timeout)
                seconds = result.timings["execution"]
                timed.append(seconds)
                totals.append(result.timings["total"])
                seeds.append(base_seed + i)
                params = {k: v for k, v in bound.params.items() if k not in ("seed", "image")}
                if on_run:
                    on_run(wf.name, i, i < warmup, seconds)
            stats[wf.name] = WorkflowStats(
                wf.name, timed[warmup:], timed[:warmup], seeds[warmup:], params, totals[warmup:]
            )
    return BenchResult(
        health.gpu_name,
        None if health.is_cpu else health.vram_total_gb,  # RAM is not VRAM
        stats,
        "measured",
        endpoint,
        dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        health.comfyui_version,
    )
