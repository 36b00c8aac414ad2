"""Request traces: read from CSV, or generated (the talk's day/night sine, bursts).

A trace is a sorted list of :class:`Arrival` (seconds from the start, workflow).
Generators take a seed so a report can be reproduced exactly.
"""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from nomad.errors import UsageError

HOUR = 3600.0


@dataclass(frozen=True, order=True)
class Arrival:
    """One request: when (seconds from the trace's start) and which workflow."""

    at: float
    workflow: str


def load_csv(path: str | Path, default_workflow: str) -> list[Arrival]:
    """Rows of ``timestamp[,workflow]``; timestamps in seconds or ISO 8601, any order.

    A header row is allowed. Times are made relative to the earliest one.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read trace {p}: {exc.strerror or exc}") from exc
    raw: list[tuple[float, str]] = []
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        stamp = _parse_time(row[0].strip())
        if stamp is None:
            if lineno == 1:  # header
                continue
            raise UsageError(f"{p}:{lineno}: not a time: {row[0]!r} (seconds or ISO 8601)")
        wf = row[1].strip() if len(row) > 1 and row[1].strip() else default_workflow
        raw.append((stamp, wf))
    if not raw:
        raise UsageError(f"{p}: no requests in the trace")
    start = min(t for t, _ in raw)
    return sorted(Arrival(t - start, wf) for t, wf in raw)


def _parse_time(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def day_night(
    *,
    hours: float,
    peak_per_hour: float,
    trough_per_hour: float,
    workflow: str,
    peak_hour: float = 14.0,
    seed: int = 0,
) -> list[Arrival]:
    """Poisson arrivals whose rate follows a 24 h sine between trough and peak.

    Thinning (Lewis-Shedler): draw at the peak rate, keep each arrival with
    probability rate(t)/peak, so the result is an exact inhomogeneous Poisson
    process for the seed.
    """
    if peak_per_hour <= 0 or trough_per_hour < 0 or trough_per_hour > peak_per_hour:
        raise UsageError("day/night trace needs 0 ≤ trough ≤ peak and peak > 0 (requests per hour)")
    rng = random.Random(seed)
    mid, amp = (peak_per_hour + trough_per_hour) / 2, (peak_per_hour - trough_per_hour) / 2
    out: list[Arrival] = []
    t, end, lam = 0.0, hours * HOUR, peak_per_hour / HOUR
    while True:
        t += rng.expovariate(lam)
        if t >= end:
            return out
        rate = mid + amp * math.cos(2 * math.pi * (t / HOUR - peak_hour) / 24.0)
        if rng.random() * peak_per_hour <= rate:
            out.append(Arrival(t, workflow))


def bursts(
    *,
    hours: float,
    bursts_per_day: float,
    jobs_per_burst: int,
    workflow: str,
    spread_seconds: float = 60.0,
    seed: int = 0,
) -> list[Arrival]:
    """Quiet hours broken by bursts: ``jobs_per_burst`` requests within ``spread_seconds``."""
    if bursts_per_day <= 0 or jobs_per_burst <= 0:
        raise UsageError("bursts need bursts_per_day > 0 and jobs_per_burst > 0")
    rng = random.Random(seed)
    out: list[Arrival] = []
    t, end, lam = 0.0, hours * HOUR, bursts_per_day / 86400.0
    while True:
        t += rng.expovariate(lam)
        if t >= end:
            return sorted(out)
        out.extend(
            Arrival(t + rng.uniform(0, spread_seconds), workflow) for _ in range(jobs_per_burst)
        )
