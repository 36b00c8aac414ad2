"""Replay a trace through the real autoscaler policy on a simulated clock.

The rules are :class:`nomad.serve.policy.Policy` itself — the same code
``nomad serve`` runs — ticked at the autoscaler's interval. What the policy
cannot see is modelled: a wake takes ``cold_start_seconds`` from the launch
request to every ComfyUI answering, a job takes its benchmark seconds on one
GPU, workers pick a job up the moment a GPU is free, and a node is billed from
the launch request to the teardown (what providers bill).
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from nomad.serve.policy import Down, Policy, PolicyConfig, Up, View
from nomad.simulate._trace import Arrival

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class SimOffer:
    """The node the simulation runs on."""

    gpu: str
    price_per_hour: float
    gpus: int = 1


@dataclass(frozen=True)
class Strategy:
    """How the fleet is run: always on, scale to zero after ``idle_minutes``, or only in a window.

    ``window`` is ``(start_hour, end_hour)`` in UTC hours of the trace's day;
    requests outside it wait for the next opening (batch processing).
    """

    name: str
    idle_minutes: float | None = None  # None: always on
    window: tuple[float, float] | None = None

    @classmethod
    def always_on(cls) -> Strategy:
        return cls("always on")

    @classmethod
    def idle(cls, minutes: float) -> Strategy:
        return cls(f"idle {minutes:g} min", idle_minutes=minutes)

    @classmethod
    def batch_window(cls, start: float, end: float, idle_minutes: float = 1.0) -> Strategy:
        return cls(
            f"window {start:02g}–{end:02g} h", idle_minutes=idle_minutes, window=(start, end)
        )


@dataclass
class SimResult:
    """What the strategy cost and what users waited."""

    strategy: str
    jobs: int
    cost: float
    days: float
    node_hours: float
    gpu_hours_billed: float
    gpu_hours_busy: float
    wakes: int
    waits: list[float] = field(default_factory=list)

    @property
    def cost_per_day(self) -> float:
        return self.cost / self.days if self.days else 0.0

    @property
    def utilisation(self) -> float:
        return self.gpu_hours_busy / self.gpu_hours_billed if self.gpu_hours_billed else 0.0

    def wait_percentile(self, q: float) -> float:
        """Nearest-rank percentile of waits (arrival → the job starts on a GPU), seconds."""
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        k = max(1, math.ceil(q / 100.0 * len(ordered)))
        return ordered[k - 1]

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "jobs": self.jobs,
            "cost_usd": round(self.cost, 4),
            "cost_per_day_usd": round(self.cost_per_day, 4),
            "node_hours": round(self.node_hours, 4),
            "gpu_hours_billed": round(self.gpu_hours_billed, 4),
            "gpu_hours_busy": round(self.gpu_hours_busy, 4),
            "utilisation": round(self.utilisation, 4),
            "wakes": self.wakes,
            "wait_p50_s": round(self.wait_percentile(50), 2),
            "wait_p95_s": round(self.wait_percentile(95), 2),
            "wait_mean_s": round(statistics.fmean(self.waits), 2) if self.waits else 0.0,
        }


@dataclass
class _Node:
    requested_at: float
    ready_at: float
    ready: bool = False


def simulate(
    arrivals: list[Arrival],
    *,
    strategy: Strategy,
    offer: SimOffer,
    run_seconds: dict[str, float],
    cold_start_seconds: float,
    horizon_seconds: float,
    tick_seconds: float = 1.0,
) -> SimResult:
    """Run the trace to completion (the queue drained and, when scaling to zero, the node down)."""
    missing = sorted({a.workflow for a in arrivals} - set(run_seconds))
    if missing:
        raise ValueError(f"no run time for workflow(s): {', '.join(missing)}")
    if strategy.idle_minutes is None:
        return _always_on(arrivals, offer, run_seconds, horizon_seconds, strategy.name)
    return _Sim(arrivals, strategy, offer, run_seconds, cold_start_seconds, tick_seconds).run(
        horizon_seconds
    )


def _always_on(
    arrivals: list[Arrival], offer: SimOffer, run: dict[str, float], horizon: float, name: str
) -> SimResult:
    """A node up the whole horizon (already warm): FIFO over its GPUs."""
    free = [0.0] * offer.gpus
    waits: list[float] = []
    busy = 0.0
    end = horizon
    for a in sorted(arrivals):
        slot = min(range(offer.gpus), key=lambda i: free[i])
        start = max(a.at, free[slot])
        free[slot] = start + run[a.workflow]
        waits.append(start - a.at)
        busy += run[a.workflow]
        end = max(end, free[slot])
    hours = end / HOUR
    return SimResult(
        strategy=name,
        jobs=len(arrivals),
        cost=offer.price_per_hour * hours,
        days=horizon / DAY,
        node_hours=hours,
        gpu_hours_billed=hours * offer.gpus,
        gpu_hours_busy=busy / HOUR,
        wakes=0,
        waits=waits,
    )


class _Sim:
    """Event loop: arrivals, job completions, wakes finishing, and policy ticks."""

    def __init__(
        self,
        arrivals: list[Arrival],
        strategy: Strategy,
        offer: SimOffer,
        run: dict[str, float],
        cold: float,
        tick: float,
    ) -> None:
        self.arrivals = deque(sorted(arrivals))
        self.strategy, self.offer, self.run_s, self.cold, self.tick = (
            strategy,
            offer,
            run,
            cold,
            tick,
        )
        idle = float(strategy.idle_minutes or 0.0) * 60.0
        self.policy = Policy(
            PolicyConfig(idle_seconds=idle, drain_seconds=min(30.0, idle * 0.1), base_name="sim")
        )
        self.waiting: deque[Arrival] = deque()  # visible to the policy
        self.held: deque[Arrival] = deque()  # outside the batch window
        self.done: list[tuple[float, int]] = []  # heap of (end time, serial)
        self.nodes: dict[str, _Node] = {}
        self.waits: list[float] = []
        self.busy = 0.0
        self.billed = 0.0
        self.wakes = 0
        self._serial = 0

    def run(self, horizon: float) -> SimResult:
        t, next_tick = 0.0, 0.0
        while True:
            t = min(self._next_event(), next_tick)
            self._arrive(t)
            while self.done and self.done[0][0] <= t:
                heapq.heappop(self.done)
            self._wake_done(t)
            self._dispatch(t)
            if t >= next_tick:
                self._policy_tick(t)
                self._dispatch(t)
                next_tick = t + self.tick
            if t >= horizon and self._quiet():
                break
            if t >= horizon + 7 * DAY:  # the policy never served them (e.g. a budget): stop
                break
        total = self.billed
        return SimResult(
            strategy=self.strategy.name,
            jobs=len(self.waits),
            cost=total * self.offer.price_per_hour / HOUR,
            days=horizon / DAY,
            node_hours=total / HOUR,
            gpu_hours_billed=total * self.offer.gpus / HOUR,
            gpu_hours_busy=self.busy / HOUR,
            wakes=self.wakes,
            waits=self.waits,
        )

    @property
    def unserved(self) -> int:
        return len(self.arrivals) + len(self.waiting) + len(self.held)

    def _quiet(self) -> bool:
        return not (self.arrivals or self.waiting or self.held or self.done or self.nodes)

    def _next_event(self) -> float:
        times = [math.inf]
        if self.arrivals:
            times.append(self.arrivals[0].at)
        if self.done:
            times.append(self.done[0][0])
        times.extend(n.ready_at for n in self.nodes.values() if not n.ready)
        if self.held and self.strategy.window:
            times.append(self._window_opens(self.held[0].at))
        return min(times)

    def _in_window(self, t: float) -> bool:
        if self.strategy.window is None:
            return True
        start, end = self.strategy.window
        hour = (t % DAY) / HOUR
        return start <= hour < end if start <= end else (hour >= start or hour < end)

    def _window_opens(self, t: float) -> float:
        """The first moment ≥ t inside the window."""
        if self._in_window(t):
            return t
        assert self.strategy.window is not None
        start = self.strategy.window[0] * HOUR
        day0 = t - t % DAY
        opening = day0 + start
        return opening if opening >= t else opening + DAY

    def _arrive(self, t: float) -> None:
        while self.arrivals and self.arrivals[0].at <= t:
            self.held.append(self.arrivals.popleft())
        while self.held and self._in_window(t):
            self.waiting.append(self.held.popleft())

    def _wake_done(self, t: float) -> None:
        for name, node in self.nodes.items():
            if not node.ready and node.ready_at <= t:
                node.ready = True
                self.policy.on_launched(
                    name,
                    t,
                    price_per_hour=self.offer.price_per_hour,
                    gpu=self.offer.gpu,
                    endpoints=self.offer.gpus,
                    waiting=len(self.waiting),
                )

    def _dispatch(self, t: float) -> None:
        ready = [n for n in self.nodes.values() if n.ready]
        slots = len(ready) * self.offer.gpus - len(self.done)
        while slots > 0 and self.waiting:
            job = self.waiting.popleft()
            secs = self.run_s[job.workflow]
            self._serial += 1
            heapq.heappush(self.done, (t + secs, self._serial))
            self.waits.append(t - job.at)
            self.busy += secs
            slots -= 1

    def _policy_tick(self, t: float) -> None:
        running = {name: len(self.done) for name in self.nodes}
        for action in self.policy.tick(View(waiting=len(self.waiting), running=running), t):
            if isinstance(action, Up):
                self.nodes[action.name] = _Node(requested_at=t, ready_at=t + self.cold)
                self.wakes += 1
            elif isinstance(action, Down):
                node = self.nodes.pop(action.name, None)
                if node is not None:
                    self.billed += t - node.requested_at
