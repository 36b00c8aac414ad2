"""ETA learned from what happened before: median cold start, median run time per workflow and GPU.

Medians, not means: one 20-minute capacity hunt should not make every later
estimate wrong. The model is a small JSON document persisted in the queue's
state table, so estimates survive restarts and front doors can read them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

KEEP = 50  # samples kept per series


@dataclass
class EtaModel:
    """Recent samples; :meth:`to_json` / :meth:`from_json` persist them."""

    cold_starts: list[float] = field(default_factory=list)
    run_times: dict[str, list[float]] = field(default_factory=dict)  # "workflow@gpu" -> seconds

    def add_cold_start(self, seconds: float) -> None:
        """Record how long a wake took (request → every endpoint healthy)."""
        self.cold_starts = [*self.cold_starts, max(0.0, seconds)][-KEEP:]

    def add_run(
        self, workflow: str, gpu: str | None, seconds: float, cold: bool | None = None
    ) -> None:
        """Record one job's run time (lease → outputs stored) on a GPU type.

        ``cold``: whether ComfyUI had to load the models for it (a loader node
        ran). ComfyUI keeps only the last prompt's models, so a workflow that
        follows another one pays its load again; those runs are kept apart.
        """
        key = f"{workflow}@{gpu or '?'}"
        for k in (key, *([f"{key}|{'cold' if cold else 'warm'}"] if cold is not None else [])):
            self.run_times[k] = [*self.run_times.get(k, []), max(0.0, seconds)][-KEEP:]

    def cold_start(self) -> float | None:
        """Median cold start in seconds, or None before the first wake."""
        return statistics.median(self.cold_starts) if self.cold_starts else None

    def cold_start_left(self, elapsed: float) -> float | None:
        """Seconds until a wake that began ``elapsed`` seconds ago is likely done (never negative)."""
        median = self.cold_start()
        return None if median is None else max(0.0, median - elapsed)

    def run_time(
        self, workflow: str, gpu: str | None = None, cold: bool | None = None
    ) -> float | None:
        """Median run time for the workflow on that GPU, else on any GPU, else None.

        With ``cold`` given, runs with that cache state are preferred (a cold
        run includes the model load); without such samples, all runs count.
        """
        tags = [f"|{'cold' if cold else 'warm'}"] if cold is not None else []
        for tag in [*tags, ""]:
            exact = self.run_times.get(f"{workflow}@{gpu or '?'}{tag}")
            if exact:
                return statistics.median(exact)
            pooled = [
                s
                for k, v in self.run_times.items()
                if k.startswith(f"{workflow}@") and k.endswith(tag) and ("|" in k) == bool(tag)
                for s in v
            ]
            if pooled:
                return statistics.median(pooled)
        return None

    def wait(
        self,
        position: int,
        workers: int,
        workflow: str,
        gpu: str | None,
        cold_left: float | None,
        cold_cache: bool | None = None,
    ) -> float | None:
        """Rough seconds until a job at ``position`` finishes: wake left + queue ahead + its own run.

        ``cold_cache``: whether its models will have to load (after a wake, or
        after another workflow ran on the GPU).
        """
        run = self.run_time(workflow, gpu, cold_cache)
        if run is None:
            return cold_left
        ahead = (max(1, position) - 1) // max(1, workers)
        return (cold_left or 0.0) + (ahead + 1) * run

    def to_json(self) -> dict[str, Any]:
        return {"cold_starts": self.cold_starts, "run_times": self.run_times}

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> EtaModel:
        """Tolerates a missing or partial document (first start)."""
        doc = doc or {}
        cold = [float(x) for x in doc.get("cold_starts", []) if isinstance(x, int | float)]
        runs = {
            str(k): [float(x) for x in v if isinstance(x, int | float)]
            for k, v in dict(doc.get("run_times", {})).items()
            if isinstance(v, list)
        }
        return cls(cold_starts=cold[-KEEP:], run_times=runs)
