"""The autoscaler's decisions as a pure state machine: no I/O, time passed in.

Each cluster moves cold → waking → ready → draining → cold. :meth:`Policy.tick`
looks at the queue (a :class:`View`) and returns :class:`Action` values for
the loop (:mod:`nomad.serve.autoscaler`) to carry out; the loop reports what
happened back through ``on_launched`` / ``on_launch_failed`` / ``on_lost``.
Because nothing here sleeps or calls out, every rule is tested with an
injected clock in microseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from nomad.serve.eta import EtaModel

DAY = 86400.0


def drain_seconds(idle_seconds: float) -> float:
    """Draining lasts 10% of the idle period, at most 30 s."""
    return min(30.0, idle_seconds * 0.1)


class Phase(enum.StrEnum):
    """Closed set of cluster phases as the autoscaler sees them."""

    COLD = "cold"
    WAKING = "waking"
    READY = "ready"
    DRAINING = "draining"


@dataclass
class Cluster:
    """One cluster the autoscaler asked for."""

    name: str
    phase: Phase
    requested_at: float
    ready_at: float | None = None
    idle_since: float | None = None
    drain_at: float | None = None
    price_per_hour: float | None = None
    gpu: str | None = None
    endpoints: int = 0
    cold_share: float = 0.0  # USD of the cold start charged to each job that waited for it

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase.value,
            "requested_at": self.requested_at,
            "ready_at": self.ready_at,
            "price_per_hour": self.price_per_hour,
            "gpu": self.gpu,
            "endpoints": self.endpoints,
        }


@dataclass(frozen=True)
class PolicyConfig:
    """The knobs, usually from ``infra:`` (see :meth:`from_infra`)."""

    idle_seconds: float = 600.0
    drain_seconds: float = 30.0
    max_clusters: int = 1
    backlog_per_cluster: int = 8
    max_price_per_hour: float | None = None
    daily_budget: float | None = None
    base_name: str = "nomad"
    backoff_seconds: float = 30.0
    max_backoff_seconds: float = 600.0

    @classmethod
    def from_infra(cls, infra: Any, project: str = "nomad") -> PolicyConfig:
        """Build from an ``InfraConfig``; draining lasts 10% of the idle period, at most 30 s."""
        idle = float(infra.idle_minutes) * 60.0
        return cls(
            idle_seconds=idle,
            drain_seconds=drain_seconds(idle),
            max_clusters=infra.max_clusters,
            backlog_per_cluster=infra.backlog_per_cluster,
            max_price_per_hour=infra.max_price_per_hour,
            daily_budget=infra.daily_budget,
            base_name=infra.cluster_name or f"{project}-serve",
        )


@dataclass(frozen=True)
class View:
    """What the queue looks like right now."""

    waiting: int
    running: dict[str, int] = field(default_factory=dict)  # cluster name -> running jobs


@dataclass(frozen=True)
class Up:
    name: str


@dataclass(frozen=True)
class Down:
    name: str
    reason: str = "idle"


@dataclass(frozen=True)
class Requeue:
    name: str
    reason: str


@dataclass(frozen=True)
class Annotate:
    """Mark every waiting job with a status and a human ``detail`` (times only fill gaps)."""

    status: str  # "queued" | "waking"
    detail: str | None
    times: dict[str, float] = field(default_factory=dict)


Action = Up | Down | Requeue | Annotate


class Policy:
    """Cluster bookkeeping and the rules; one instance per ``nomad serve``."""

    def __init__(self, config: PolicyConfig, eta: EtaModel | None = None) -> None:
        self.config = config
        self.eta = eta or EtaModel()
        self.clusters: dict[str, Cluster] = {}
        self.blocked: str | None = None  # why waiting jobs cannot get a GPU now
        self.price_hint: float | None = None  # $/h of the last offer seen
        self.spent: dict[str, float] = {}  # UTC day -> USD of clusters already gone
        # today's USD from the cluster ledger (every launcher), refreshed by the loop
        self.ledger_spend: float | None = None
        self.reserved: set[str] = set()  # names still open in the ledger: never launched again
        self.hold: str | None = None  # an admin stopped the GPU (/down): no launches until /up
        self.wake_requested = False  # an admin asked for a GPU now (/up), jobs or not
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: str | None = None
        self._annotated: tuple[str, str | None] | None = None
        self._last_waiting = 0
        self._serial = 0

    # -- the rules ------------------------------------------------------------------------

    def tick(self, view: View, now: float) -> list[Action]:
        """Advance idle timers, tear down, launch, and annotate waiting jobs."""
        actions: list[Action] = []
        busy_all = view.waiting > 0
        for c in list(self.clusters.values()):
            busy = busy_all or view.running.get(c.name, 0) > 0
            actions.extend(self._advance(c, busy, now))
        self.blocked = None
        wake = self.wake_requested and not self.clusters
        if (view.waiting > 0 and self._wants_cluster(view)) or wake:
            self.blocked = self._why_not(now)
            if self.blocked is None:
                actions.append(self._launch(now))
                self.wake_requested = False
        actions.extend(self._annotate(view, now))
        self._last_waiting = view.waiting
        return actions

    def _advance(self, c: Cluster, busy: bool, now: float) -> list[Action]:
        if c.phase is Phase.READY:
            if busy:
                c.idle_since = None
            elif c.idle_since is None:
                c.idle_since = now
            elif now - c.idle_since >= self.config.idle_seconds:
                c.phase, c.drain_at = Phase.DRAINING, now + self.config.drain_seconds
        if c.phase is Phase.DRAINING:
            if busy:  # work arrived: the teardown is cancelled
                c.phase, c.idle_since, c.drain_at = Phase.READY, None, None
            elif c.drain_at is not None and now >= c.drain_at:
                self._close(c, now)
                return [Down(c.name)]
        return []

    def _wants_cluster(self, view: View) -> bool:
        active = len(self.clusters)
        if active == 0:
            return True
        if active >= self.config.max_clusters:
            return False
        return view.waiting / active > self.config.backlog_per_cluster

    def _why_not(self, now: float) -> str | None:
        """A clear sentence when budget, price cap or launch backoff holds jobs back."""
        cfg = self.config
        price = self.price_hint
        if self.hold is not None:
            return f"waiting: {self.hold}"
        if (
            cfg.max_price_per_hour is not None
            and price is not None
            and price > cfg.max_price_per_hour
        ):
            return (
                f"waiting: the cheapest GPU costs ${price:.2f}/h, above "
                f"infra.max_price_per_hour ${cfg.max_price_per_hour:.2f}/h"
            )
        if cfg.daily_budget is not None:
            spent = self.spend_today(now)
            wake = (price or 0.0) * cfg.idle_seconds / 3600.0
            if spent >= cfg.daily_budget or spent + wake > cfg.daily_budget:
                return (
                    f"waiting: daily budget ${cfg.daily_budget:.2f} reached (${spent:.2f} spent "
                    "today); it resets at 00:00 UTC"
                )
        if now < self._retry_at:
            return f"waiting: GPU launch failed ({self._last_error}); retrying in {self._retry_at - now:.0f} s"
        return None

    def _launch(self, now: float) -> Up:
        self._serial += 1
        name = (
            self.config.base_name
            if self._serial == 1
            else f"{self.config.base_name}-{self._serial}"
        )
        while name in self.clusters or name in self.reserved:
            self._serial += 1
            name = f"{self.config.base_name}-{self._serial}"
        self.clusters[name] = Cluster(
            name=name, phase=Phase.WAKING, requested_at=now, price_per_hour=self.price_hint
        )
        return Up(name)

    def _annotate(self, view: View, now: float) -> list[Action]:
        if view.waiting == 0:
            self._annotated = None
            return []
        ready = any(c.phase in (Phase.READY, Phase.DRAINING) for c in self.clusters.values())
        waking = [c for c in self.clusters.values() if c.phase is Phase.WAKING]
        times: dict[str, float] = {}
        if self.blocked is not None:
            key: tuple[str, str | None] = ("queued", self.blocked)
        elif waking and not ready:
            first = min(waking, key=lambda c: c.requested_at)
            left = self.eta.cold_start_left(now - first.requested_at)
            detail = f"waking a GPU (~{left:.0f} s)" if left is not None else "waking a GPU"
            key, times = ("waking", detail), {"cluster_requested_at": first.requested_at}
        else:
            key = ("queued", None)
        if key == self._annotated and view.waiting <= self._last_waiting:
            return []
        self._annotated = key
        return [Annotate(key[0], key[1], times)]

    # -- events from the loop ---------------------------------------------------------------

    def on_launched(
        self,
        name: str,
        now: float,
        *,
        price_per_hour: float,
        gpu: str | None,
        endpoints: int,
        waiting: int,
    ) -> Annotate | None:
        """The cluster answers: ready; learn the cold start; split its cost over the jobs that waited."""
        c = self.clusters.get(name)
        if c is None:
            return None
        c.phase, c.ready_at, c.idle_since = Phase.READY, now, None
        c.price_per_hour, c.gpu, c.endpoints = price_per_hour, gpu, endpoints
        self.price_hint = price_per_hour
        self._failures, self._retry_at, self._last_error = 0, 0.0, None
        cold = now - c.requested_at
        self.eta.add_cold_start(cold)
        c.cold_share = price_per_hour * cold / 3600.0 / max(1, waiting)
        self._annotated = ("queued", None)
        return Annotate("queued", None, {"cluster_ready_at": now})

    def adopt(
        self, name: str, now: float, *, price_per_hour: float, gpu: str | None, endpoints: int
    ) -> None:
        """A cluster already up when serve starts (e.g. after ``--keep-up``): ready, idle clock running."""
        self.clusters[name] = Cluster(
            name=name,
            phase=Phase.READY,
            requested_at=now,
            ready_at=now,
            idle_since=now,
            price_per_hour=price_per_hour,
            gpu=gpu,
            endpoints=endpoints,
        )
        self._serial = max(self._serial, 1)

    def on_launch_failed(
        self, name: str, now: float, error: str, *, price_hint: float | None = None
    ) -> None:
        """Forget the cluster; back off exponentially before the next try."""
        c = self.clusters.get(name)
        if c is not None:
            self._close(c, now)
        if price_hint is not None:
            self.price_hint = price_hint
        self._failures += 1
        delay = self.config.backoff_seconds * 2 ** (self._failures - 1)
        self._retry_at = now + min(delay, self.config.max_backoff_seconds)
        self._last_error = error

    def on_lost(self, name: str, now: float, detail: str) -> list[Action]:
        """A failed or preempted cluster: its running jobs go back; the next tick launches anew."""
        c = self.clusters.get(name)
        if c is None:
            return []
        self._close(c, now)
        self._annotated = None
        return [Requeue(name, f"requeued: cluster {name} was lost ({detail})"), Down(name, "lost")]

    # -- money --------------------------------------------------------------------------------

    def _close(self, c: Cluster, now: float) -> None:
        day = _day(now)
        self.spent[day] = self.spent.get(day, 0.0) + _cost_today(c, now)
        self.clusters.pop(c.name, None)

    def spend_today(self, now: float) -> float:
        """USD spent on GPUs since 00:00 UTC: the ledger's figure (every cluster of the project,
        whoever launched it) when the loop gave one, never less than this serve's own count."""
        live = sum(_cost_today(c, now) for c in self.clusters.values())
        own = self.spent.get(_day(now), 0.0) + live
        return own if self.ledger_spend is None else max(own, self.ledger_spend)

    def hourly_rate(self) -> float:
        """Current $/hour across clusters (waking ones at the last known price)."""
        return sum(c.price_per_hour or self.price_hint or 0.0 for c in self.clusters.values())

    def phase(self) -> Phase:
        """The headline phase: ready beats waking beats draining beats cold."""
        phases = {c.phase for c in self.clusters.values()}
        for p in (Phase.READY, Phase.WAKING, Phase.DRAINING):
            if p in phases:
                return p
        return Phase.COLD


def _day(now: float) -> str:
    return str(int(now // DAY))


def _cost_today(c: Cluster, now: float) -> float:
    start = max(c.requested_at, now - now % DAY)
    return (c.price_per_hour or 0.0) * max(0.0, now - start) / 3600.0
