"""Compare results the way the published table does: seconds per GPU and the speed-up."""

from __future__ import annotations

from dataclasses import dataclass

from nomad.bench._results import BenchResult


def speedup_pct(before: float, after: float) -> float:
    """Time saved going from ``before`` to ``after`` seconds, in percent.

    This is how the published 4090→5090 table states speed-ups: 4.92 s → 1.80 s
    is (4.92 - 1.80) / 4.92 = 63 %. Negative when ``after`` is slower.
    """
    if before <= 0:
        raise ValueError("baseline seconds must be positive")
    return (before - after) / before * 100.0


@dataclass(frozen=True)
class CompareRow:
    """One workflow across results: mean seconds per result (None if not run there)."""

    workflow: str
    seconds: list[float | None]
    speedup: float | None  # last vs first, percent time saved
    ratio: float | None  # first / last ("x faster")
    usd: list[float | None]


def compare(results: list[BenchResult], prices: list[float] | None = None) -> list[CompareRow]:
    """Rows for every workflow in any result; speed-up is the last result against the first."""
    names: list[str] = []
    for r in results:
        names += [n for n in r.workflows if n not in names]
    rows = []
    for name in names:
        secs = [r.workflows[name].mean if name in r.workflows else None for r in results]
        first, last = secs[0], secs[-1]
        both = len(secs) > 1 and first is not None and last is not None and first > 0
        usd = [
            None
            if s is None or not prices or i >= len(prices)
            else round(s * prices[i] / 3600.0, 6)
            for i, s in enumerate(secs)
        ]
        rows.append(
            CompareRow(
                name,
                secs,
                speedup_pct(first, last) if both and first and last is not None else None,
                (first / last) if both and first and last else None,
                usd,
            )
        )
    return rows
