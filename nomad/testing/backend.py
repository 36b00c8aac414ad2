"""``FakeBackend``: a launch :class:`~nomad.backends.base.Backend` that provisions nothing.

A protocol double for the launch seam, so the autoscaler, the CLI and users'
own automation can be tested without a cloud. It is deterministic and
synchronous: with ``launch_delay_s=0`` nothing ever sleeps. Failures,
preemption and capacity errors are scripted; every call is recorded in
``calls`` as ``(method, cluster_name)``.

It can also stand up real ComfyUI protocol doubles (``FakeComfy`` processes)
as its endpoints (``start_comfy=True``), so health checks run against a real
HTTP server on loopback.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from nomad.backends.base import (
    Backend,
    ClusterInfo,
    ClusterState,
    Endpoint,
    LaunchSpec,
    Offer,
    SupportsSpot,
    SupportsStop,
)
from nomad.errors import NoCapacityError


class FakeBackend(Backend, SupportsStop, SupportsSpot):
    """A scriptable in-memory backend; nothing is provisioned (named honestly: a fake)."""

    name = "fake"

    def __init__(
        self,
        *,
        launch_delay_s: float = 0.0,
        endpoints: list[str] | None = None,
        price_per_hour: float = 1.0,
        gpu: str = "RTX4090",
        fail_launch: Exception | None = None,
        offers: list[Offer] | None = None,
        clock: Callable[[], float] = time.time,
        start_comfy: bool = False,
    ) -> None:
        self.launch_delay_s = launch_delay_s
        self.endpoints = list(endpoints) if endpoints is not None else ["http://127.0.0.1:8188"]
        self.price_per_hour = price_per_hour
        self.gpu = gpu
        self.fail_launch = fail_launch
        self.offers = offers
        self.clock = clock
        self.start_comfy = start_comfy
        self.calls: list[tuple[str, str]] = []
        self.clusters: dict[str, ClusterInfo] = {}
        self._outcomes: deque[Exception | None] = deque()
        self._lock = threading.Lock()
        self._comfy: dict[str, list[object]] = {}

    # -- scripting -----------------------------------------------------------------

    def script_launches(self, outcomes: Iterable[Exception | None]) -> None:
        """Queue per-call launch outcomes (an exception to raise, or None to succeed).

        Consumed one per ``launch`` before ``fail_launch`` applies, e.g.
        ``[NoCapacityError("…"), None]`` fails the first offer and succeeds on the next.
        """
        with self._lock:
            self._outcomes.extend(outcomes)

    def set_state(self, name: str, state: ClusterState, detail: str | None = None) -> None:
        """Simulate the provider changing a cluster (preemption, failure, stop)."""
        with self._lock:
            info = self.clusters.get(name)
            if info is None:
                info = ClusterInfo(name=name, backend=self.name, state=state)
                self.clusters[name] = info
            info.state = state
            info.detail = detail or _default_detail(state)

    # -- Backend -------------------------------------------------------------------

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """The configured offers (or one synthetic offer), filtered by spec's price cap."""
        self._record("plan", spec.cluster_name)
        offers = self.offers if self.offers is not None else [self._default_offer(spec)]
        cap = spec.max_price_per_hour
        kept = [o for o in offers if cap is None or o.price_per_hour <= cap]
        if not kept:
            raise NoCapacityError(
                f"no fake offer at or under ${cap}/hour",
                hint="raise infra.max_price_per_hour or give FakeBackend cheaper offers",
            )
        return kept

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Record the call, apply the scripted outcome, and return an UP cluster."""
        self._record("launch", spec.cluster_name)
        with self._lock:
            outcome = self._outcomes.popleft() if self._outcomes else self.fail_launch
        if outcome is not None:
            raise outcome
        if self.launch_delay_s > 0:
            time.sleep(self.launch_delay_s)
        offer = offer or self._default_offer(spec)
        endpoints = self._start_endpoints(spec)
        info = ClusterInfo(
            name=spec.cluster_name,
            backend=self.name,
            state=ClusterState.UP,
            endpoints=[Endpoint(url=u, gpu_index=i) for i, u in enumerate(endpoints)],
            offer=offer,
            started_at=self.clock(),
            price_per_hour=offer.price_per_hour,
        )
        with self._lock:
            self.clusters[spec.cluster_name] = info
        return _copy(info)

    def status(self, cluster_name: str) -> ClusterInfo:
        """What the fake holds; GONE for unknown names."""
        self._record("status", cluster_name)
        with self._lock:
            info = self.clusters.get(cluster_name)
            if info is None:
                return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)
            return _copy(info)

    def teardown(self, cluster_name: str) -> None:
        """Forget the cluster (idempotent) and stop any FakeComfy it started."""
        self._record("teardown", cluster_name)
        with self._lock:
            self.clusters.pop(cluster_name, None)
            procs = self._comfy.pop(cluster_name, [])
        for proc in procs:
            _stop_comfy(proc)

    def stop(self, cluster_name: str) -> None:
        """Mark the cluster STOPPED; missing clusters are ignored."""
        self._record("stop", cluster_name)
        with self._lock:
            info = self.clusters.get(cluster_name)
            if info is not None:
                info.state = ClusterState.STOPPED

    def close(self) -> None:
        """Stop every FakeComfy process this fake started (tests call it in teardown)."""
        for name in list(self._comfy):
            for proc in self._comfy.pop(name, []):
                _stop_comfy(proc)

    # -- helpers ---------------------------------------------------------------------

    def _record(self, method: str, name: str) -> None:
        with self._lock:
            self.calls.append((method, name))

    def _default_offer(self, spec: LaunchSpec) -> Offer:
        return Offer(
            cloud="fake",
            region="loopback",
            instance_type=f"fake-{spec.gpu_count}x-{self.gpu}",
            gpu=self.gpu,
            gpu_count=spec.gpu_count,
            price_per_hour=self.price_per_hour,
            spot=spec.spot,
            vram_gb=24.0,
        )

    def _start_endpoints(self, spec: LaunchSpec) -> list[str]:
        if not self.start_comfy:
            return list(self.endpoints)
        from nomad.backends.local.process import start_comfy_double

        procs = [start_comfy_double(gpu_name=self.gpu) for _ in range(spec.gpu_count)]
        with self._lock:
            self._comfy[spec.cluster_name] = [p for p, _ in procs]
        return [url for _, url in procs]


def _default_detail(state: ClusterState) -> str | None:
    return {
        ClusterState.PREEMPTED: "spot capacity reclaimed by the provider",
        ClusterState.FAILED: "the cluster failed",
    }.get(state)


def _copy(info: ClusterInfo) -> ClusterInfo:
    return ClusterInfo(
        name=info.name,
        backend=info.backend,
        state=info.state,
        endpoints=list(info.endpoints),
        offer=info.offer,
        started_at=info.started_at,
        price_per_hour=info.price_per_hour,
        detail=info.detail,
        extra=dict(info.extra),
    )


def _stop_comfy(proc: object) -> None:
    from nomad.backends.local.process import stop_process

    stop_process(proc)  # type: ignore[arg-type]
