"""`nomad simulate`: replay a request trace through the real autoscaler policy, compare strategies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nomad.cli.output import console, emit_json
from nomad.errors import UsageError

HOUR = 3600.0


def _offer(text: str) -> Any:
    """``GPU=PRICE`` or ``GPU=PRICExN`` (N GPUs on the node), e.g. ``"RTX 5090=0.89x2"``."""
    from nomad.simulate import SimOffer

    gpu, sep, rest = text.partition("=")
    price, _, count = rest.lower().partition("x")
    try:
        if not sep or not gpu.strip():
            raise ValueError
        return SimOffer(gpu.strip(), float(price), int(count) if count else 1)
    except ValueError:
        raise UsageError(
            f"--offer {text!r}: expected GPU=PRICE_PER_HOUR[xGPUS], e.g. 'RTX 5090=0.89' or 'RTX 4090=0.80x2'"
        ) from None


def _pair(text: str, what: str) -> tuple[float, float]:
    a, sep, b = text.replace("-", ",").partition(",")
    try:
        if not sep:
            raise ValueError
        return float(a), float(b)
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected two numbers, e.g. 30,2") from None


def _run_seconds(bench: tuple[str, ...], gpu: str, workflow: str, override: float | None) -> float:
    """Seconds per run on ``gpu``: --run-seconds, else bench files, else the published reference."""
    if override is not None:
        return override
    from nomad.bench import load_results, reference_results
    from nomad.placement import seconds_per_run

    results = load_results(bench) if bench else reference_results()
    seconds = seconds_per_run(results, gpu).get(workflow)
    if seconds is None:
        source = ", ".join(bench) if bench else "the published reference (RTX 4090, RTX 5090)"
        raise UsageError(
            f"no timing for {workflow} on {gpu} in {source}",
            hint="pass --run-seconds S, or --bench FILE from `nomad bench` on that GPU",
        )
    return seconds


@click.command("simulate")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False),
    help="CSV of timestamp[,workflow] rows.",
)
@click.option(
    "--day-night",
    metavar="PEAK,TROUGH",
    help="Generate a sine day: requests/hour at peak and trough.",
)
@click.option(
    "--bursts", metavar="PER_DAY,JOBS", help="Generate bursts: bursts per day, jobs per burst."
)
@click.option(
    "--hours", type=float, default=24.0, show_default=True, help="Length of a generated trace."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated trace.")
@click.option(
    "--workflow", default="flux_schnell", show_default=True, help="Workflow of generated requests."
)
@click.option(
    "--offer", "offer_text", required=True, help="GPU=PRICE_PER_HOUR[xGPUS], e.g. 'RTX 5090=0.89'."
)
@click.option(
    "--bench",
    "bench",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Bench result JSON (repeatable); default: published reference timings.",
)
@click.option(
    "--run-seconds", type=float, default=None, help="Seconds per job, instead of benchmark timings."
)
@click.option(
    "--cold-start",
    type=float,
    default=180.0,
    show_default=True,
    help="Seconds from launch to ComfyUI answering (assumed; use `nomad status` figures).",
)
@click.option(
    "--idle",
    "idle_text",
    default="2,10,30",
    show_default=True,
    help="Idle timeouts to compare, minutes, comma-separated.",
)
@click.option(
    "--window",
    "windows",
    multiple=True,
    metavar="START-END",
    help="Batch window in UTC hours, e.g. 2-5 (repeatable).",
)
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the chart as PNG."
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML report.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def simulate(
    trace_path: str | None,
    day_night: str | None,
    bursts: str | None,
    hours: float,
    seed: int,
    workflow: str,
    offer_text: str,
    bench: tuple[str, ...],
    run_seconds: float | None,
    cold_start: float,
    idle_text: str,
    windows: tuple[str, ...],
    plot_path: str | None,
    html_path: str | None,
    as_json: bool,
) -> None:
    """What scale-to-zero saves you, and what it costs your users in wait — before you pay.

    Replays a request trace through the real autoscaler policy on a simulated
    clock and compares: always on, several idle timeouts, batch windows.

    \b
    Examples:
      nomad simulate --day-night 60,2 --offer 'RTX 5090=0.89' --html report.html
      nomad simulate --trace requests.csv --offer 'RTX 4090=0.40' --idle 5,15 --json
    """
    from nomad import simulate as sim

    offer = _offer(offer_text)
    arrivals = _arrivals(sim, trace_path, day_night, bursts, hours, seed, workflow)
    horizon = max(hours * HOUR, arrivals[-1].at if arrivals else 0.0)
    flows = sorted({a.workflow for a in arrivals})
    runs = {wf: _run_seconds(bench, offer.gpu, wf, run_seconds) for wf in flows}
    strategies = [sim.Strategy.always_on(), *_idles(sim, idle_text)]
    strategies += [sim.Strategy.batch_window(*_pair(w, "--window")) for w in windows]
    results = [
        sim.simulate(
            arrivals,
            strategy=s,
            offer=offer,
            run_seconds=runs,
            cold_start_seconds=cold_start,
            horizon_seconds=horizon,
        )
        for s in strategies
    ]
    assumptions = {
        "requests": len(arrivals),
        "hours": round(horizon / HOUR, 2),
        "offer": f"{offer.gpu} ${offer.price_per_hour:.2f}/h × {offer.gpus} GPU",
        "seconds per job": {k: round(v, 3) for k, v in runs.items()},
        "cold start (s)": cold_start,
    }
    _write_outputs(sim, results, arrivals, horizon, assumptions, plot_path, html_path)
    if as_json:
        emit_json({"assumptions": assumptions, "results": [r.to_json() for r in results]})
        return
    out = console()
    out.print(", ".join(f"{k}: {v}" for k, v in assumptions.items()))
    out.print(sim.table(results))
    for line in sim.savings(results):
        out.print(line)


def _arrivals(
    sim: Any,
    trace: str | None,
    day_night: str | None,
    bursts: str | None,
    hours: float,
    seed: int,
    workflow: str,
) -> list[Any]:
    given = [x for x in (trace, day_night, bursts) if x]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of --trace FILE, --day-night PEAK,TROUGH, --bursts PER_DAY,JOBS"
        )
    if trace:
        arrivals: list[Any] = sim.load_csv(trace, workflow)
        return arrivals
    if day_night:
        peak, trough = _pair(day_night, "--day-night")
        return list(
            sim.day_night(
                hours=hours,
                peak_per_hour=peak,
                trough_per_hour=trough,
                workflow=workflow,
                seed=seed,
            )
        )
    per_day, jobs = _pair(bursts or "", "--bursts")
    return list(
        sim.bursts(
            hours=hours,
            bursts_per_day=per_day,
            jobs_per_burst=int(jobs),
            workflow=workflow,
            seed=seed,
        )
    )


def _idles(sim: Any, text: str) -> list[Any]:
    try:
        minutes = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"--idle {text!r}: expected minutes, comma-separated, e.g. 2,10,30"
        ) from None
    if any(m <= 0 for m in minutes):
        raise UsageError("--idle: timeouts must be > 0 minutes")
    return [sim.Strategy.idle(m) for m in minutes]


def _write_outputs(
    sim: Any,
    results: list[Any],
    arrivals: list[Any],
    horizon: float,
    assumptions: dict[str, Any],
    plot_path: str | None,
    html_path: str | None,
) -> None:
    if not (plot_path or html_path):
        return
    from nomad.simulate._report import write

    png = sim.plot_png(results, arrivals, horizon)
    if plot_path:
        write(Path(plot_path), png)
    if html_path:
        write(Path(html_path), sim.html_page(results, png, assumptions))
