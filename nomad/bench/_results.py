"""Benchmark results: per-workflow run times on one GPU, as JSON files, plus the stats on them."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.errors import UsageError

SCHEMA = "nomad.bench/1"


@dataclass(frozen=True)
class WorkflowStats:
    """Seconds per run of one workflow (warm-up excluded) and what they were run with."""

    workflow: str
    runs: list[float]
    warmup: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    totals: list[float] = field(default_factory=list)  # wall seconds incl. upload/download

    @property
    def mean(self) -> float:
        return statistics.fmean(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.runs) if len(self.runs) > 1 else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runs": [round(r, 4) for r in self.runs],
            "warmup": [round(r, 4) for r in self.warmup],
            "seeds": self.seeds,
            "params": self.params,
            "totals": [round(t, 4) for t in self.totals],
        }
        out.update(
            {k: round(getattr(self, k), 4) for k in ("mean", "median", "min", "max", "stdev")}
        )
        return out


@dataclass(frozen=True)
class BenchResult:
    """One benchmark session: a GPU, where it ran, and stats per workflow.

    ``source`` is ``measured`` (nomad bench ran it) or ``published`` (the
    reference dataset shipped with nomad).
    """

    gpu: str
    vram_gb: float | None
    workflows: dict[str, WorkflowStats]
    source: str = "measured"
    endpoint: str | None = None
    created_at: str | None = None
    comfyui_version: str | None = None
    note: str = ""
    path: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "gpu": {"name": self.gpu, "vram_gb": self.vram_gb},
            "endpoint": self.endpoint,
            "created_at": self.created_at,
            "comfyui_version": self.comfyui_version,
            "note": self.note,
            "metric": "seconds of ComfyUI execution per run (execution_start → done)",
            "workflows": {k: v.to_json() for k, v in self.workflows.items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(
            json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        tmp.replace(path)
        return path


def from_json(data: dict[str, Any], path: Path | None = None) -> BenchResult:
    """Parse a results document; a wrong shape is a UsageError naming the file."""
    where = str(path) if path else "bench results"
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{where}: not a nomad bench result (schema {SCHEMA!r} expected)")
    try:
        gpu = data["gpu"]
        workflows = {
            name: WorkflowStats(
                name,
                [float(x) for x in w["runs"]],
                [float(x) for x in w.get("warmup", [])],
                [int(s) for s in w.get("seeds", [])],
                dict(w.get("params", {})),
                [float(x) for x in w.get("totals", [])],
            )
            for name, w in data["workflows"].items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: malformed bench result ({exc})") from None
    empty = [n for n, w in workflows.items() if not w.runs]
    if empty:
        raise UsageError(f"{where}: workflow(s) {', '.join(empty)} have no runs")
    return BenchResult(
        str(gpu["name"]),
        gpu.get("vram_gb"),
        workflows,
        data.get("source", "measured"),
        data.get("endpoint"),
        data.get("created_at"),
        data.get("comfyui_version"),
        data.get("note", ""),
        path,
    )


REFERENCE = "@reference"


def load_results(paths: Iterable[str | Path]) -> list[BenchResult]:
    """Load result files; the special path ``@reference`` yields the published figures."""
    out: list[BenchResult] = []
    for p in paths:
        if str(p) == REFERENCE:
            from nomad.bench.reference import reference_results

            out += reference_results()
            continue
        path = Path(p)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read bench results {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
        out.append(from_json(data, path))
    return out


_NOISE = re.compile(r"NVIDIA|GEFORCE|TESLA|SXM\d?|PCIE|[^A-Z0-9]")


def gpu_key(name: str) -> str:
    """A comparable GPU name: 'NVIDIA GeForce RTX 4090' and 'RTX4090' both give 'RTX4090'."""
    return _NOISE.sub("", name.upper())


def _matches(result_gpu: str, gpu: str) -> bool:
    a, b = gpu_key(result_gpu), gpu_key(gpu)
    return bool(a and b) and (a == b or a.startswith(b) or b.startswith(a))


def price_per_image(
    results: Iterable[BenchResult], gpu: str, price_per_hour: float
) -> dict[str, float]:
    """USD per run of each workflow on ``gpu`` at ``price_per_hour``, from the mean seconds.

    Measured results win over published ones; among equals the later file wins.
    A GPU with no results gives ``{}``.
    """
    if price_per_hour < 0:
        raise UsageError(f"price per hour must be ≥ 0, not {price_per_hour}")
    ranked = sorted(
        (r for r in results if _matches(r.gpu, gpu)), key=lambda r: r.source == "measured"
    )
    seconds: dict[str, float] = {}
    for result in ranked:
        for name, stats in result.workflows.items():
            seconds[name] = stats.mean
    return {name: round(s * price_per_hour / 3600.0, 6) for name, s in sorted(seconds.items())}
