"""Warm-up on wake: one small workflow per ComfyUI server before the first real job.

ComfyUI loads a model on the first prompt that needs it (tens of seconds for
a big diffusion model). Paying that on a warm-up prompt means the first user
does not (worker-comfyui #90 asks for exactly this). Each GPU runs its own
ComfyUI with its own VRAM, so every endpoint is warmed, all at once.

The warm-up is its own cold-start phase (``warmup``). A failed or slow
warm-up is recorded (``ok: false``) but never fails the wake: the node still
serves, and the first real job pays the load as it would have anyway.

The autoscaler (or ``nomad up``) calls :func:`warm_up` after the endpoints
answer and before it hands the cluster to workers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.node.phases import PhaseRecorder


@dataclass
class WarmupReport:
    """What the warm-up did per endpoint (seconds, or the error that stopped it)."""

    workflow: str
    seconds: float
    endpoints: dict[str, float | str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(isinstance(v, float) for v in self.endpoints.values())


async def warm_up(
    cfg: Any,
    endpoints: list[str],
    *,
    recorder: PhaseRecorder | None = None,
    config_dir: Path | None = None,
    proxy: str | None = None,
) -> WarmupReport | None:
    """Run ``node.warmup`` on every endpoint at once; None when no warm-up is configured."""
    w = cfg.node.warmup
    if w is None or not endpoints:
        return None
    from nomad.comfy.runner import run_bound
    from nomad.workflows import load_workflow

    base = config_dir or Path.cwd()
    dirs = [d if Path(d).is_absolute() else str(base / d) for d in cfg.workflows.dirs]
    bound = load_workflow(w.workflow, dirs).bind(w.params)
    t0 = time.monotonic()

    async def one(url: str) -> float | str:
        started = time.monotonic()
        try:
            await run_bound(url, bound, proxy=proxy, timeout=w.timeout_s)
        except Exception as exc:  # recorded, never raised: the node still serves
            return f"{type(exc).__name__}: {exc}"
        return time.monotonic() - started

    results = await asyncio.gather(*(one(u) for u in endpoints))
    report = WarmupReport(
        w.workflow, time.monotonic() - t0, dict(zip(endpoints, results, strict=True))
    )
    if recorder is not None:
        recorder.record(
            "warmup",
            report.seconds,
            ok=report.ok,
            workflow=w.workflow,
            endpoints={
                u: (round(v, 3) if isinstance(v, float) else v) for u, v in report.endpoints.items()
            },
        )
    return report
