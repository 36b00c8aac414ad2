"""Render simulation results: a rich table, a matplotlib chart, a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nomad.errors import NotAvailableError
from nomad.simulate._engine import SimResult
from nomad.simulate._trace import Arrival

HOUR = 3600.0


def table(results: Sequence[SimResult]) -> Any:
    """A rich Table comparing strategies (the baseline, always on, first)."""
    from rich.table import Table

    t = Table(title="scale-to-zero simulation")
    for col in (
        "strategy",
        "$/day",
        "GPU-h billed",
        "GPU-h busy",
        "util",
        "wakes",
        "p50 wait",
        "p95 wait",
    ):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in results:
        t.add_row(
            r.strategy,
            f"${r.cost_per_day:.2f}",
            f"{r.gpu_hours_billed:.2f}",
            f"{r.gpu_hours_busy:.2f}",
            f"{r.utilisation:.0%}",
            str(r.wakes),
            _secs(r.wait_percentile(50)),
            _secs(r.wait_percentile(95)),
        )
    return t


def savings(results: Sequence[SimResult]) -> list[str]:
    """Plain sentences: what each strategy saves against always-on, and what it costs in wait."""
    base = next((r for r in results if r.wakes == 0 and r.strategy == "always on"), None)
    if base is None or base.cost == 0:
        return []
    lines = []
    for r in results:
        if r is base:
            continue
        saved = 1 - r.cost / base.cost
        lines.append(
            f"{r.strategy}: saves {saved:.0%} (${base.cost_per_day - r.cost_per_day:.2f}/day) "
            f"for a p95 wait of {_secs(r.wait_percentile(95))} (always on: {_secs(base.wait_percentile(95))})"
        )
    return lines


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def plot_png(results: Sequence[SimResult], arrivals: Sequence[Arrival], horizon: float) -> bytes:
    """Three panels: requests per hour, $/day per strategy, p50/p95 wait per strategy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise NotAvailableError(
            "plotting needs matplotlib", hint="pip install 'nomad-comfy[sim]' (or drop --plot/--html)"
        ) from exc
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(15, 4.2))
    hours = max(1, int(-(-horizon // HOUR)))
    counts = [0] * hours
    for a in arrivals:
        counts[min(hours - 1, int(a.at // HOUR))] += 1
    ax0.bar(range(hours), counts, color="#4c72b0")
    ax0.set(title="requests per hour", xlabel="hour", ylabel="requests")
    names = [r.strategy for r in results]
    ax1.barh(names, [r.cost_per_day for r in results], color="#55a868")
    ax1.set(title="GPU cost per day (USD)", xlabel="$/day")
    ax1.invert_yaxis()
    y = range(len(results))
    ax2.barh(
        [i + 0.2 for i in y], [r.wait_percentile(50) for r in results], height=0.4, label="p50"
    )
    ax2.barh(
        [i - 0.2 for i in y], [r.wait_percentile(95) for r in results], height=0.4, label="p95"
    )
    ax2.set_yticks(list(y), names)
    ax2.set_xscale("symlog", linthresh=1.0)  # seconds for warm clusters, hours for batch windows
    ax2.set(title="wait before a GPU starts the job", xlabel="seconds (log)")
    ax2.invert_yaxis()
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def html_page(results: Sequence[SimResult], png: bytes, assumptions: dict[str, Any]) -> str:
    """One self-contained page: assumptions, the comparison table, sentences, the chart."""
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.to_json().values()) + "</tr>"
        for r in results
    )
    head = "".join(f"<th>{html.escape(k)}</th>" for k in results[0].to_json()) if results else ""
    facts = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in assumptions.items()
    )
    said = "".join(f"<li>{html.escape(s)}</li>" for s in savings(results))
    img = base64.b64encode(png).decode()
    return (
        "<!doctype html><meta charset=utf-8><title>nomad simulate</title>"
        "<style>body{font:14px system-ui;margin:2em}td,th{padding:4px 8px;border-bottom:1px solid #ddd}</style>"
        f"<h1>What scale-to-zero saves, and what it costs in wait</h1><ul>{facts}</ul>"
        f"<table><tr>{head}</tr>{rows}</table><ul>{said}</ul>"
        f'<img alt="chart" src="data:image/png;base64,{img}">'
    )


def write(path: Path, data: bytes | str) -> None:
    """Write atomically (a half-written report is worse than none)."""
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    tmp.replace(path)
