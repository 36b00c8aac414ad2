"""`nomad bench`: time workflows on an endpoint, compare result files, show the reference."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json

if TYPE_CHECKING:
    from nomad.bench import BenchResult, CompareRow


def _usd(v: float | None) -> str:
    if v is None:
        return ""
    return f"${v:.4f}" if v >= 0.001 else f"${v:.6f}"


def _secs(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _speed(row: CompareRow) -> str:
    if row.speedup is None or row.ratio is None:
        return "—"
    if row.speedup < 0:
        return f"{row.speedup:.0f}% (slower, ×{row.ratio:.2f})"
    return f"~{row.speedup:.0f}% (×{row.ratio:.2f})"


def _labels(results: list[BenchResult]) -> list[str]:
    """Column labels: the GPU, plus the file name when two results share a GPU."""
    names = [r.gpu for r in results]
    return [
        f"{r.gpu} · {r.path.stem}" if names.count(r.gpu) > 1 and r.path else r.gpu for r in results
    ]


def _compare_table(results: list[BenchResult], rows: list[CompareRow], priced: bool) -> Any:
    from rich.table import Table

    labels = _labels(results)
    table = Table(
        "workflow",
        *(f"{label} (s)" for label in labels),
        "speed-up",
        *(f"$/image {label}" for label in labels if priced),
    )
    for row in rows:
        usd = [_usd(u) for u in row.usd] if priced else []
        table.add_row(row.workflow, *(_secs(s) for s in row.seconds), _speed(row), *usd)
    return table


@click.group("bench")
def bench() -> None:
    """Benchmark workflows per GPU; compare results; $/image."""


@bench.command("run")
@click.argument("workflows", nargs=-1, required=True)
@click.option("--endpoint", help="ComfyUI URL (default: the running cluster).")
@click.option("--runs", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option(
    "--warmup",
    type=click.IntRange(0, 100),
    default=1,
    show_default=True,
    help="Runs before timing (model load); recorded, not counted.",
)
@click.option(
    "--seed",
    "base_seed",
    type=int,
    default=1000,
    show_default=True,
    help="Run i uses seed SEED+i (fixed, never cached).",
)
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Input image for edit workflows (default: a generated gradient).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Results JSON (default: bench-GPU-TIME.json).",
)
@click.option("--price-per-hour", type=float, help="USD/hour of this GPU ⇒ $/image.")
@click.option("--timeout", type=float, default=3600, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def run_cmd(
    ctx: Ctx,
    workflows: tuple[str, ...],
    endpoint: str | None,
    runs: int,
    warmup: int,
    base_seed: int,
    sets: tuple[str, ...],
    image: Path | None,
    out_path: Path | None,
    price_per_hour: float | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Run WORKFLOWS RUNS times each (after WARMUP) and save the timings as JSON."""
    from nomad.bench import gpu_key, run_bench
    from nomad.cli.run_cmd import _dirs, _pairs, _proxy
    from nomad.comfy.runner import resolve_endpoint

    url = resolve_endpoint(endpoint, ctx.data_dir)
    con = console()

    def on_run(name: str, i: int, warm: bool, seconds: float) -> None:
        if not as_json:
            con.print(f"  {name} run {i + 1}{' (warm-up)' if warm else ''}: {seconds:.2f}s")

    result = asyncio.run(
        run_bench(
            url,
            workflows,
            runs=runs,
            warmup=warmup,
            base_seed=base_seed,
            values=_pairs(sets),
            image=image.read_bytes() if image else None,
            extra_dirs=_dirs(ctx),
            proxy=_proxy(ctx),
            timeout=timeout,
            on_run=on_run,
        )
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    path = result.save(out_path or Path(f"bench-{gpu_key(result.gpu).lower()}-{stamp}.json"))
    if as_json:
        emit_json({**result.to_json(), "path": str(path)})
        return
    from rich.table import Table

    table = Table("workflow", "runs", "mean s", "median s", "min s", "max s", "$/image")
    for name, s in result.workflows.items():
        usd = s.mean * price_per_hour / 3600 if price_per_hour is not None else None
        table.add_row(
            name,
            str(len(s.runs)),
            f"{s.mean:.2f}",
            f"{s.median:.2f}",
            f"{s.min:.2f}",
            f"{s.max:.2f}",
            _usd(usd),
        )
    memory = f"{result.vram_gb} GB" if result.vram_gb is not None else "no GPU: a CPU-only server"
    con.print(f"[bold]{result.gpu}[/] ({memory}) on {url}")
    con.print(table)
    con.print(f"results → {path}")


@bench.command("compare")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--price-per-hour",
    "prices",
    type=float,
    multiple=True,
    help="USD/hour per result, in order (repeat) ⇒ $/image columns.",
)
@click.option("--json", "as_json", is_flag=True)
def compare_cmd(files: tuple[str, ...], prices: tuple[float, ...], as_json: bool) -> None:
    """Seconds per workflow per result and the speed-up of the last over the first.

    Speed-up is time saved, as the published table states it: 4.92 s → 1.80 s
    is ~63%. FILES may include @reference (the published RTX 4090/5090 figures).
    """
    from nomad.bench import compare, load_results

    results = load_results(files)
    rows = compare(results, list(prices) or None)
    if as_json:
        emit_json(
            {
                "gpus": [r.gpu for r in results],
                "rows": [
                    {
                        "workflow": r.workflow,
                        "seconds": r.seconds,
                        "speedup_pct": r.speedup,
                        "ratio": r.ratio,
                        "usd_per_image": r.usd,
                    }
                    for r in rows
                ],
            }
        )
        return
    console().print(_compare_table(results, rows, bool(prices)))


@bench.command("reference")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reference_cmd(click_ctx: click.Context, as_json: bool) -> None:
    """The published RTX 4090 vs RTX 5090 figures shipped with nomad."""
    from nomad.bench import REFERENCE

    click_ctx.invoke(compare_cmd, files=(REFERENCE,), prices=(), as_json=as_json)
