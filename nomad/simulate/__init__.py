"""``nomad simulate``: what scale-to-zero saves, and what it costs users in wait — before paying.

A request trace (CSV, or generated: the talk's day/night sine, bursts) is
replayed through the real autoscaler policy (:mod:`nomad.serve.policy`) with a
simulated clock, against one offer, benchmark timings and a cold-start model,
for several strategies: always on, idle timeouts of several lengths, batch
windows. The output is $ per day, GPU-hours billed vs busy and p50/p95 wait.
"""

from nomad.simulate._engine import SimOffer, SimResult, Strategy, simulate
from nomad.simulate._report import html_page, plot_png, savings, table
from nomad.simulate._trace import Arrival, bursts, day_night, load_csv

__all__ = [
    "Arrival",
    "SimOffer",
    "SimResult",
    "Strategy",
    "bursts",
    "day_night",
    "html_page",
    "load_csv",
    "plot_png",
    "savings",
    "simulate",
    "table",
]
