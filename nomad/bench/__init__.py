"""Benchmarks: time workflows per GPU, compare GPUs, turn $/hour into $/image.

Public API (``nomad plan`` uses the last two for $/image ranking)::

    run_bench(endpoint, workflows, runs=5, warmup=1, ...) -> BenchResult   (async)
    compare(results, prices=None) -> list[CompareRow]
    speedup_pct(before_s, after_s) -> float          # 4.92 → 1.80 is 63.4
    load_results(paths) -> list[BenchResult]         # "@reference" = published figures
    price_per_image(results, gpu, price_per_hour) -> dict[workflow, usd]
"""

from nomad.bench._compare import CompareRow, compare, speedup_pct
from nomad.bench._results import (
    REFERENCE,
    BenchResult,
    WorkflowStats,
    from_json,
    gpu_key,
    load_results,
    price_per_image,
)
from nomad.bench._runner import run_bench
from nomad.bench.reference import reference_results

__all__ = [
    "REFERENCE",
    "BenchResult",
    "CompareRow",
    "WorkflowStats",
    "compare",
    "from_json",
    "gpu_key",
    "load_results",
    "price_per_image",
    "reference_results",
    "run_bench",
    "speedup_pct",
]
