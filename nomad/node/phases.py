"""Cold-start phases of one wake, as structured events.

A wake is: provision → base pull → weights fetch → ComfyUI start → model load
(→ warm-up) → first image. Each phase is one event
``{"event": "cold_start.phase", "wake": …, "phase": …, "seconds": …, "ok": …}``
handed to ``emit`` (a JSON-lines file on the node, the log, or — once the
cluster ledger lands — the ledger's per-wake record). Times come from an
injected monotonic clock, so tests never sleep.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("nomad.cold_start")

PHASES = (
    "provision",
    "base_pull",
    "weights_fetch",
    "comfy_start",
    "model_load",
    "warmup",
    "first_image",
)

Emit = Callable[[dict[str, Any]], None]


def jsonl(path: Path) -> Emit:
    """An emitter appending one JSON object per line to ``path`` (and logging it)."""

    def emit(event: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(event, sort_keys=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        log.info("%s", line)

    return emit


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Events written by :func:`jsonl` (a torn last line is skipped)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in lines:
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


class PhaseRecorder:
    """Times the phases of one wake and emits each as an event."""

    def __init__(self, wake: str, emit: Emit, clock: Callable[[], float] = time.monotonic) -> None:
        self.wake = wake
        self.emit = emit
        self.clock = clock
        self.seconds: dict[str, float] = {}

    def record(self, phase: str, seconds: float, *, ok: bool = True, **fields: Any) -> None:
        """Emit a phase measured elsewhere (e.g. provision, timed by the controller)."""
        if phase not in PHASES:
            raise ValueError(f"unknown cold-start phase {phase!r} (one of {', '.join(PHASES)})")
        self.seconds[phase] = seconds
        self.emit(
            {
                "event": "cold_start.phase",
                "wake": self.wake,
                "phase": phase,
                "seconds": round(seconds, 3),
                "ok": ok,
                "pid": os.getpid(),
                **fields,
            }
        )

    @contextlib.contextmanager
    def phase(self, phase: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Time the block; extra fields may be added to the yielded dict inside it."""
        extra: dict[str, Any] = dict(fields)
        t0 = self.clock()
        try:
            yield extra
        except BaseException as exc:
            self.record(phase, self.clock() - t0, ok=False, error=type(exc).__name__, **extra)
            raise
        self.record(phase, self.clock() - t0, **extra)
