"""The autoscaler loop: reads the queue, asks the pure :class:`Policy`, carries out its actions.

Launches run in a thread while the loop keeps ticking, so waiting jobs are
annotated ("waking a GPU (~90 s)") during the minutes a cold start takes.
Ready clusters are polled through the Backend; a failed or preempted one has
its running jobs requeued and a new cluster requested. State and ETA are
published to the queue's state table (``autoscaler``/``status``) for the bot
and ``nomad status``; what was learned (cold starts, run times, spend) is kept
under ``autoscaler``/``history`` so a restart does not forget it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nomad.backends.base import Backend, ClusterInfo, ClusterState, Endpoint, LaunchSpec, Offer
from nomad.errors import BackendError
from nomad.queue.base import JobQueue, JobStatus
from nomad.queue.ledger import ClusterLedger, LedgerRow, LedgerState, me
from nomad.serve.log import event
from nomad.serve.policy import Action, Annotate, Down, Phase, Policy, Requeue, Up, View
from nomad.serve.runner import error_text
from nomad.serve.threads import DaemonThreads
from nomad.serve.worker import ClusterRuntime

if TYPE_CHECKING:
    import httpx

    from nomad.config.schema import NomadConfig
    from nomad.placement import IdleRule, StopOrDown

SCOPE = "autoscaler"
LAUNCH_STOP_S = 8.0
ARRIVALS = 500  # recent jobs whose arrival times estimate the idle gap (stop vs down)  # shutdown waits this long for called-off launches to tear down
HEALTH_PROBE_TIMEOUT_S = 10.0
LOST = (ClusterState.FAILED, ClusterState.PREEMPTED, ClusterState.GONE, ClusterState.STOPPED)


@dataclass
class Launched:
    """A cluster that answers, with when it was provisioned and when it became healthy."""

    info: ClusterInfo
    provisioned_at: float
    ready_at: float
    warmup_s: float | None = None  # node.warmup's own phase (included in ready_at)


class ClusterOps(Protocol):
    """Blocking cluster operations the loop runs in threads."""

    def up(self, name: str) -> Launched: ...

    def down(self, name: str) -> None: ...

    def status(self, name: str) -> ClusterInfo: ...


class Hooks(Protocol):
    """What the loop tells the worker pool."""

    def start_cluster(self, rt: ClusterRuntime) -> None: ...

    async def stop_cluster(self, name: str) -> None: ...


class BackendOps:
    """ClusterOps over a launch Backend, through the cluster ledger like every launch path.

    ``up`` writes the ledger row before the launch call, tries the cheapest
    offers in turn and tears down (bounded, confirmed) every try that failed;
    ``down`` closes the row only once the backend confirms the cluster is gone.
    Without a ledger (some unit tests) nothing is recorded; ``nomad serve``
    always gives it one.
    """

    def __init__(
        self,
        backend: Backend,
        spec: LaunchSpec,
        data_dir: Path | None,
        *,
        health_timeout_s: float | None = 900.0,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        ledger: ClusterLedger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        health_client: httpx.Client | None = None,
        idle_rule: IdleRule | None = None,
        warmup: NomadConfig | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self.backend, self.spec, self.data_dir = backend, spec, data_dir
        self.queue = queue  # its waiting jobs set each wake's spot/price (nomad.batch.wake_request)
        self.warmup = warmup  # its node.warmup runs on every new cluster before workers get it
        self.idle_rule = idle_rule  # stop vs down for idle clusters (None: always down)
        self.health_client = health_client  # through the proxy when privacy is on
        self.health_timeout_s, self.clock = health_timeout_s, clock
        self.max_attempts = max(1, max_attempts)
        self.ledger, self.sleep = ledger, sleep
        self._called_off = threading.Event()
        self._slow: dict[str, int] = {}  # endpoint -> consecutive health-probe timeouts

    def cancel(self) -> None:
        """Call off launches in flight (serve is stopping): their health wait ends within one
        poll and what they started is torn down."""
        self._called_off.set()

    def _startup_failure(self, name: str) -> str | None:
        """Why a starting cluster cannot come up (the backend's word), or that serve is stopping."""
        if self._called_off.is_set():
            return "the wake was called off (nomad serve is stopping)"
        return self.backend.startup_failure(name)

    def up(self, name: str) -> Launched:
        """Launch (or reuse one already serving); every failed try is torn down before the next."""
        if self._called_off.is_set():
            raise BackendError(f"not launching {name}: nomad serve is stopping")
        current = self._reusable(name)
        if current is not None:
            now = self.clock()
            return Launched(current, now, now)
        spec = self._wake_spec(name)
        start = self.clock()
        info = self._launch(spec)
        if self.data_dir is not None:
            from nomad.backends import state

            state.save(self.data_dir, info)
        warmup_s = self._warm_up(name, [e.url for e in info.endpoints])
        return Launched(info, start, self.clock(), warmup_s)

    def _wake_spec(self, name: str) -> LaunchSpec:
        """This wake's launch spec: infra's, with spot and price cap as the waiting jobs allow —
        spot only when every waiting job is a batch job that allows it, the lowest cap among
        theirs and infra's (:func:`nomad.batch.wake_request`); an interactive job waiting keeps
        infra's terms. Spot is never asked of a backend that cannot launch it."""
        from nomad.backends.base import SupportsSpot

        spec = replace(self.spec, cluster_name=name)
        if self.queue is None:
            return spec
        from nomad.batch import wake_request

        waiting = self.queue.list(status=[JobStatus.QUEUED, JobStatus.WAKING], limit=1000)
        req = wake_request(waiting, infra_spot=spec.spot, infra_max_price=spec.max_price_per_hour)
        spot = req.spot and isinstance(self.backend, SupportsSpot)
        if (spot, req.max_price_per_hour) != (spec.spot, spec.max_price_per_hour):
            event("cluster.wake_terms", cluster=name, spot=spot,
                  max_price_per_hour=req.max_price_per_hour, reason=req.reason)  # fmt: skip
        return replace(spec, spot=spot, max_price_per_hour=req.max_price_per_hour)

    def _warm_up(self, name: str, urls: list[str]) -> float | None:
        """``node.warmup`` on every endpoint of a new cluster, timed as its own cold-start phase
        (a ``cold_start.phase`` event, a line in ``DATA_DIR/cold_start.jsonl``). The endpoints
        answer by now; the model load is paid here, not by the first job. A failed or slow
        warm-up is recorded and never fails the wake: the first job pays the load instead."""
        cfg = self.warmup
        if cfg is None or cfg.node.warmup is None or not urls or self._called_off.is_set():
            return None
        from nomad.node.phases import PhaseRecorder, jsonl
        from nomad.node.warmup import warm_up

        to_file = jsonl(self.data_dir / "cold_start.jsonl") if self.data_dir is not None else None

        def emit(doc: dict[str, Any]) -> None:
            fields = {k: v for k, v in doc.items() if k not in ("event", "pid")}
            event("cold_start.phase", cluster=name, **fields)
            if to_file is not None:
                to_file(doc | {"cluster": name})

        row = self.ledger.find_open(name) if self.ledger is not None else None
        rec = PhaseRecorder(str(row.id) if row is not None else name, emit)
        from nomad import privacy

        proxy = privacy.proxy_for(cfg.privacy, "comfy")
        try:
            report = asyncio.run(warm_up(cfg, urls, recorder=rec, proxy=proxy))
        except Exception as exc:  # a bad workflow name, a broken graph: recorded, never fatal
            rec.record("warmup", 0.0, ok=False, error=error_text(exc))
            return None
        return report.seconds if report is not None else None

    def _reusable(self, name: str) -> ClusterInfo | None:
        """A cluster of that name already serving (left by an earlier run), else None after
        making sure a stale one is gone (its ledger row open in another state)."""
        current = self.status(name)
        if current.state is ClusterState.UP and current.endpoints:
            return current
        book = self.ledger
        row = book.find_open(name) if book is not None else None
        if row is not None and book is not None:
            from nomad.launch import retire

            retire(self.backend, book, row.id, name, "replaced", sleep=self.sleep)
        return None

    def _launch(self, spec: LaunchSpec) -> ClusterInfo:
        """Launch on the cheapest offer within ``max_price_per_hour`` (never the backend's
        unpriced choice), so the price cap holds and the spend the budget counts is real.
        A failed try is torn down (confirmed) and the next offer tried; a teardown that
        cannot be confirmed stops here, so failures never pile up paid clusters."""
        from nomad.launch import SAME_EVERYWHERE, TeardownUnconfirmed, affordable_offers, wide_spec

        ranked = affordable_offers(self.backend, spec)
        if self.ledger is not None:  # a cluster stopped when idle restarts on its own offer
            from nomad.placement import restart_first

            ranked = restart_first(ranked, self.ledger.last(spec.cluster_name))
        offers = ranked[: self.max_attempts]
        wide = wide_spec(self.backend, spec, ranked[self.max_attempts :])
        for i, offer in enumerate(offers):
            try:
                info = self._try(spec, offer)
            except (*SAME_EVERYWHERE, TeardownUnconfirmed):
                raise
            except BackendError:  # torn down already: the next cheapest offer
                if i == len(offers) - 1 and wide is None:
                    raise
                continue
            info.offer = info.offer or offer
            info.price_per_hour = info.price_per_hour or offer.price_per_hour
            return info
        if wide is not None:  # infra.wide_failover: SkyPilot's own failover over the rest
            return self._try(wide, None)
        raise AssertionError("unreachable: affordable_offers is never empty")

    def _try(self, spec: LaunchSpec, offer: Offer | None) -> ClusterInfo:
        from nomad.launch import launch_recorded, teardown_confirmed, wait_healthy

        if self._called_off.is_set():
            raise BackendError(f"not launching {spec.cluster_name}: nomad serve is stopping")
        if self.ledger is not None:
            return launch_recorded(
                self.backend, spec, offer, self.ledger, requested_by="autoscaler",
                health_timeout_s=self.health_timeout_s, clock=self.clock, sleep=self.sleep,
                failed=lambda: self._startup_failure(spec.cluster_name),
                health_client=self.health_client,
            )  # fmt: skip
        try:  # no ledger (unit tests): same teardown rule, nothing recorded
            info = self.backend.launch(spec, offer)
            if self.health_timeout_s is not None:
                wait_healthy(
                    [e.url for e in info.endpoints],
                    timeout_s=self.health_timeout_s,
                    failed=lambda: self._startup_failure(spec.cluster_name),
                    client=self.health_client,
                )
        except BaseException:
            teardown_confirmed(self.backend, spec.cluster_name, sleep=self.sleep)
            raise
        info.state = ClusterState.UP
        return info

    def idle_down(self, name: str, arrivals: list[float], cold_start_s: float | None) -> StopOrDown:
        """An idle cluster: stop it (disk kept) or tear it down, as ``idle_rule`` decides by price
        (:mod:`nomad.serve.stop_or_down`); the decision and why go into the ledger."""
        from nomad.serve.stop_or_down import retire_idle

        return retire_idle(self, name, arrivals, cold_start_s)

    def down(self, name: str, reason: str | None = None) -> None:
        """Idempotent teardown, confirmed; the ledger row closes and the endpoint cache forgets it."""
        from nomad.launch import retire, teardown_confirmed

        row = self.ledger.find_open(name) if self.ledger is not None else None
        if row is not None and self.ledger is not None:
            why = reason or "down by the autoscaler"
            if row.state is LedgerState.LOST and row.detail:
                why = f"{row.detail}; torn down"  # keep the loss on record (next offer first)
            else:
                self.ledger.mark(
                    row.id, LedgerState.STOPPING, reason or "teardown requested by the autoscaler"
                )
            retire(self.backend, self.ledger, row.id, name, why, sleep=self.sleep)
        else:
            teardown_confirmed(self.backend, name, sleep=self.sleep)
        if self.data_dir is not None:
            from nomad.backends import state

            state.remove(self.data_dir, name)

    def status(self, name: str) -> ClusterInfo:
        """The backend's view, with price, offer and endpoints from the ledger (providers omit
        them); when launches check health, an UP cluster whose ComfyUI stopped answering is
        reported FAILED (a dead endpoint is a lost cluster at once, not one to dispatch to)."""
        info = self.backend.status(name)
        if info.state is not ClusterState.UP:
            return info
        row = self.ledger.find_open(name) if self.ledger is not None else None
        if row is not None:
            info.price_per_hour = info.price_per_hour or row.price_per_hour
            info.offer = info.offer or row.offer
            if not info.endpoints:
                info.endpoints = [Endpoint(url=u, gpu_index=i) for i, u in enumerate(row.endpoints)]
        elif self.data_dir is not None and not info.price_per_hour:
            from nomad.backends import state

            rec = state.load(self.data_dir, name)
            if rec is not None:
                info.price_per_hour = rec.price_per_hour
                info.offer = info.offer or rec.offer
                info.endpoints = info.endpoints or rec.endpoints
        if self.health_timeout_s is not None and info.endpoints:
            dead = self._unanswered(name, [e.url for e in info.endpoints])
            if dead:
                info.state = ClusterState.FAILED
                info.detail = f"ComfyUI stopped answering /system_stats at {dead}"
        return info

    def _unanswered(self, name: str, urls: list[str]) -> str | None:
        """The first endpoint that is dead: refused at once, or timing out twice in a row
        (a busy ComfyUI still answers /system_stats; a wedged one does not).

        Asked through ``health_client`` (the proxy, with its handshake deadline, when privacy is
        on: an ``.onion`` endpoint never goes to DNS); else directly, never through a proxy from
        the environment. A proxy that gives no answer counts as a timeout: the proxy, not the
        node, may be what failed (a client restarting), so it takes two checks in a row."""
        import httpx

        if self.health_client is not None:
            return self._probe_all(self.health_client, urls, proxied=True)
        with httpx.Client(timeout=HEALTH_PROBE_TIMEOUT_S, trust_env=False) as http:
            return self._probe_all(http, urls)

    def _probe_all(self, http: httpx.Client, urls: list[str], *, proxied: bool = False) -> str | None:
        """``proxied``: every connect goes to the SOCKS port, so a refused connect is the proxy
        (a managed client restarting), not the node: it counts like a timeout, twice to be lost."""
        import httpx

        soft: tuple[type[Exception], ...] = (httpx.TimeoutException, httpx.ProxyError)
        if proxied:
            soft = (*soft, httpx.ConnectError)
        for url in urls:
            try:
                resp = http.get(url.rstrip("/") + "/system_stats", timeout=HEALTH_PROBE_TIMEOUT_S)
                if resp.status_code == 200:
                    self._slow.pop(url, None)
                    continue
                return f"{url} (HTTP {resp.status_code})"
            except soft as exc:
                self._slow[url] = self._slow.get(url, 0) + 1
                if self._slow[url] >= 2 and proxied:
                    return f"{url} (twice in a row, through the proxy: {exc})"
                if self._slow[url] >= 2:
                    return f"{url} (timed out twice)"
            except httpx.HTTPError as exc:
                return f"{url} ({type(exc).__name__})"
        return None


class Autoscaler:
    """One per ``nomad serve``. Drive it with :meth:`run`, or :meth:`step` in tests."""

    def __init__(
        self,
        queue: JobQueue,
        ops: ClusterOps,
        policy: Policy,
        hooks: Hooks,
        *,
        clock: Callable[[], float] = time.time,
        status_every: float = 15.0,
        ledger: ClusterLedger | None = None,
    ) -> None:
        self.queue, self.ops, self.policy, self.hooks = queue, ops, policy, hooks
        self.clock, self.status_every = clock, status_every
        self.ledger = ledger
        self._launches: dict[str, asyncio.Task[None]] = {}
        self._threads = DaemonThreads()  # launches never hold serve open at exit
        self._next_status = 0.0
        self._orphans: set[str] = set()  # teardowns that failed; retried every step
        self._view = View(waiting=0)
        self._woken_at = 0.0

    # -- persistence --------------------------------------------------------------------------

    async def load(self) -> None:
        """Restore spend (today's) from the last run, so a restart cannot overspend the budget."""
        doc = await asyncio.to_thread(self.queue.get_state, SCOPE, "history") or {}
        spent = doc.get("spent")
        if isinstance(spent, dict):
            self.policy.spent = {
                str(k): float(v) for k, v in spent.items() if isinstance(v, int | float)
            }
        if isinstance(doc.get("price_hint"), int | float):
            self.policy.price_hint = float(doc["price_hint"])
        self._woken_at = self.clock() - 60.0  # an /up from before this start is stale
        if self.ledger is None:
            await self._adopt(self.policy.config.base_name)
        else:
            await self.reconcile()

    async def reconcile(self) -> None:
        """Serve's start: every open ledger row is checked with its backend (way 2 of the
        leaks: adoption by name missed ``-serve-2``). Up and answering ⇒ adopted (up to
        ``max_clusters``); confirmed gone ⇒ closed; anything else ⇒ torn down. Rows of
        another backend, and launches still in flight in another live process, are left
        alone (``nomad status`` shows them)."""
        from nomad.launch import in_flight

        assert self.ledger is not None
        book = self.ledger
        rows = await asyncio.to_thread(book.open_rows)
        mine = getattr(getattr(self.ops, "backend", None), "name", None)
        for row in rows:
            if mine is not None and row.backend != mine:
                event(
                    "cluster.foreign", level=logging.WARNING, cluster=row.name, backend=row.backend
                )
                continue
            if row.owner != me() and in_flight(row, self.clock()):
                continue
            try:
                info = await asyncio.to_thread(self.ops.status, row.name)
            except Exception as exc:
                self._orphans.add(row.name)
                event(
                    "cluster.status_failed",
                    level=logging.WARNING,
                    cluster=row.name,
                    error=error_text(exc),
                )
                continue
            if info.state is ClusterState.GONE:
                await asyncio.to_thread(book.confirm_gone, row.id, "gone before serve started")
                event("cluster.closed", cluster=row.name, detail="gone before serve started")
            elif (
                info.state is ClusterState.UP
                and info.endpoints
                and len(self.policy.clusters) < self.policy.config.max_clusters
            ):
                await asyncio.to_thread(book.claim, row.id)
                if row.state is not LedgerState.UP:
                    urls = [e.url for e in info.endpoints]
                    await asyncio.to_thread(book.mark_up, row.id, urls)
                self._take_over(row.name, info)
            else:
                await self._down(Down(row.name, f"not wanted at start ({info.state.value})"))
        self.policy.reserved = {r.name for r in await asyncio.to_thread(book.open_rows)} - set(
            self.policy.clusters
        )

    def _take_over(self, name: str, info: ClusterInfo) -> None:
        gpu = info.offer.gpu if info.offer is not None else None
        self.policy.adopt(
            name, self.clock(), price_per_hour=info.price_per_hour, gpu=gpu,
            endpoints=len(info.endpoints),
        )  # fmt: skip
        self.hooks.start_cluster(
            ClusterRuntime(name, [e.url for e in info.endpoints], info.price_per_hour, gpu)
        )
        event("cluster.adopted", cluster=name, endpoints=len(info.endpoints))

    async def _adopt(self, name: str) -> None:
        """Take over a cluster left running by an earlier serve, so it still idles down."""
        try:
            info = await asyncio.to_thread(self.ops.status, name)
        except Exception as exc:
            event(
                "cluster.status_failed", level=logging.WARNING, cluster=name, error=error_text(exc)
            )
            return
        if info.state is not ClusterState.UP or not info.endpoints:
            return
        self._take_over(name, info)

    async def publish(self) -> dict[str, Any]:
        """Write the status document front doors read, and the learned history."""
        doc = self.status_doc()
        history = {
            **self.policy.eta.to_json(),
            "spent": self.policy.spent,
            "price_hint": self.policy.price_hint,
        }
        await asyncio.to_thread(self.queue.put_state, SCOPE, "status", doc)
        await asyncio.to_thread(self.queue.put_state, SCOPE, "history", history)
        return doc

    def status_doc(self) -> dict[str, Any]:
        """state, clusters, ETA of the wake, spend: see docs/autoscaler.md for every field."""
        now, p = self.clock(), self.policy
        waking = [c for c in p.clusters.values() if c.phase is Phase.WAKING]
        cold = p.eta.cold_start()
        eta = ready_at = None
        if waking and p.phase() is Phase.WAKING:
            first = min(c.requested_at for c in waking)
            eta = p.eta.cold_start_left(now - first)
            ready_at = first + cold if cold is not None else None
        return {
            "state": p.phase().value,
            "clusters": [c.to_json() for c in p.clusters.values()],
            "waiting": self._view.waiting,
            "running": sum(self._view.running.values()),
            "eta_seconds": eta,
            "ready_at": ready_at,
            "cold_start_median_s": cold,
            "detail": p.blocked,
            "spend_today": round(p.spend_today(now), 4),
            "hourly_rate": round(p.hourly_rate(), 4),
            "daily_budget": p.config.daily_budget,
            "max_price_per_hour": p.config.max_price_per_hour,
            "idle_minutes": p.config.idle_seconds / 60.0,
            "updated_at": now,
        }

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and retried, never fatal."""
        await self.load()
        while not stop.is_set():
            try:
                await self.step()
                await self.publish()
            except Exception as exc:  # keep serving; the next tick retries
                event("autoscaler.tick_failed", level=logging.WARNING, error=error_text(exc))
            await self._pause(stop, interval)

    async def _pause(self, stop: asyncio.Event, interval: float) -> None:
        """Between ticks. With nothing waiting, block on the queue's wake-up instead, so the
        first job on a cold cluster is seen at once (NOTIFY on PostgreSQL, a short poll on SQLite)."""
        if self._view.waiting == 0 and not stop.is_set():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.queue.wait_for_work, interval)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()

    async def step(self) -> list[Action]:
        """One tick: retry orphans, check cluster health, ask the policy, act."""
        now = self.clock()
        for name in list(self._orphans):
            await self._down(Down(name, "retry"))
        actions: list[Action] = []
        await self._read_admin()
        if now >= self._next_status:
            self._next_status = now + self.status_every
            if self.ledger is not None:
                actions.extend(await self._sync_ledger(now))
            actions.extend(await self._check_clusters(now))
            for action in actions:  # requeue before looking at the queue again
                await self._apply(action)
        self._view = await asyncio.to_thread(self._read_view)
        decided = self.policy.tick(self._view, now)
        for action in decided:
            await self._apply(action)
        return actions + decided

    async def _record_loss(self, name: str, detail: str) -> None:
        """The ledger says why (the row stays open until the teardown is confirmed)."""
        if self.ledger is None:
            return
        row = await asyncio.to_thread(self.ledger.find_open, name)
        if row is not None:
            await asyncio.to_thread(self.ledger.mark, row.id, LedgerState.LOST, f"lost: {detail}")

    async def _sync_ledger(self, now: float) -> list[Action]:
        """Spend (every launcher's), names still open, and clusters someone else closed
        (an admin's /down, `nomad down`): those are lost to us at once."""
        assert self.ledger is not None
        rows = await asyncio.to_thread(self.ledger.open_rows)
        spend = await asyncio.to_thread(self.ledger.spend_today, now)
        self.policy.ledger_spend = spend
        open_names = {r.name for r in rows}
        self.policy.reserved = (open_names | self._orphans) - set(self.policy.clusters)
        actions: list[Action] = []
        for c in list(self.policy.clusters.values()):
            if c.phase in (Phase.READY, Phase.DRAINING) and c.name not in open_names:
                event(
                    "cluster.lost",
                    level=logging.WARNING,
                    cluster=c.name,
                    detail="closed in the ledger",
                )
                actions.extend(self.policy.on_lost(c.name, now, "stopped outside serve"))
        await self._close_vanished(rows, now)
        return actions

    async def _close_vanished(self, rows: list[LedgerRow], now: float) -> None:
        """Open rows of this backend that serve does not run (a `nomad up` cluster, one whose
        teardown failed): once the backend no longer knows them (the node's switch, autostop,
        removed by hand) they are closed, so their spend stops counting."""
        from nomad.launch import in_flight

        mine = getattr(getattr(self.ops, "backend", None), "name", None)
        for row in rows:
            if row.name in self.policy.clusters or row.backend != mine or in_flight(row, now):
                continue
            try:
                info = await asyncio.to_thread(self.ops.status, row.name)
            except Exception:
                continue  # retried at the next status check
            if info.state is ClusterState.GONE and self.ledger is not None:
                await asyncio.to_thread(self.ledger.confirm_gone, row.id, "gone (seen by serve)")
                self._orphans.discard(row.name)
                event("cluster.closed", cluster=row.name, detail="gone (seen by serve)")

    async def _read_admin(self) -> None:
        """An admin's /down holds launches until /up; /up may ask for a GPU now."""
        doc = await asyncio.to_thread(self.queue.get_state, SCOPE, "admin") or {}
        hold = doc.get("hold")
        self.policy.hold = str(hold) if hold else None
        wake = doc.get("wake_at")
        if isinstance(wake, int | float) and wake > self._woken_at:
            self._woken_at = float(wake)
            self.policy.wake_requested = True

    async def settle(self) -> None:
        """Wait for launches in flight (tests; shutdown)."""
        while self._launches:
            await asyncio.gather(*self._launches.values(), return_exceptions=True)

    async def shutdown(self, *, teardown: bool = True) -> None:
        """Stop launching (bounded: launches in flight are called off, not waited for); tear every
        cluster down unless asked to keep them."""
        call_off = getattr(self.ops, "cancel", None)
        if call_off is not None:
            call_off()
        for task in self._launches.values():
            task.cancel()
        await asyncio.gather(*self._launches.values(), return_exceptions=True)
        if not await self._threads.join(LAUNCH_STOP_S):
            event(
                "autoscaler.launch_abandoned", level=logging.WARNING, threads=self._threads.running
            )
        if teardown:
            for name in list(self.policy.clusters):
                self.policy.on_lost(name, self.clock(), "nomad serve stopped")
                await self._down(Down(name, "shutdown"))
        with contextlib.suppress(Exception):
            await self.publish()

    # -- actions -------------------------------------------------------------------------------

    def _arrivals(self) -> list[float]:
        """When the recent jobs arrived (the idle-gap estimate for stop vs down)."""
        jobs = self.queue.list(limit=ARRIVALS)
        return [j.times["queued_at"] for j in jobs if "queued_at" in j.times]

    def _read_view(self) -> View:
        counts = self.queue.counts()
        waiting = counts[JobStatus.QUEUED] + counts[JobStatus.WAKING]
        by_cluster = getattr(self.queue, "running_by_cluster", None)
        running = by_cluster() if by_cluster else {"": counts[JobStatus.RUNNING]}
        return View(waiting=waiting, running=running)

    async def _apply(self, action: Action) -> None:
        if isinstance(action, Up):
            event("cluster.up", cluster=action.name, waiting=self._view.waiting)
            task = asyncio.create_task(self._launch(action.name))
            self._launches[action.name] = task
            task.add_done_callback(self._forget_launch)
        elif isinstance(action, Down):
            await self._down(action)
        elif isinstance(action, Requeue):
            await self.hooks.stop_cluster(action.name)
            n = await asyncio.to_thread(
                self.queue.requeue_running, cluster=action.name, reason=action.reason
            )
            event("cluster.requeued", cluster=action.name, jobs=n)
        elif isinstance(action, Annotate):
            await self._annotate(action)

    async def _annotate(self, note: Annotate) -> None:
        waiting_ids = getattr(self.queue, "waiting_ids", None)
        if waiting_ids is not None:
            ids = await asyncio.to_thread(waiting_ids)
        else:
            jobs = await asyncio.to_thread(
                self.queue.list, status=[JobStatus.QUEUED, JobStatus.WAKING], limit=1000
            )
            ids = [j.id for j in jobs]
        await asyncio.to_thread(
            self.queue.set_status, ids, JobStatus(note.status), detail=note.detail, times=note.times
        )

    def _forget_launch(self, task: asyncio.Task[None]) -> None:
        for name, t in list(self._launches.items()):
            if t is task:
                del self._launches[name]

    async def _launch(self, name: str) -> None:
        try:
            done = await self._threads.run(lambda: self.ops.up(name), name=f"launch {name}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.policy.on_launch_failed(name, self.clock(), error_text(exc))
            event(
                "cluster.launch_failed", level=logging.WARNING, cluster=name, error=error_text(exc)
            )
            return
        info = done.info
        waiting = (await asyncio.to_thread(self._read_view)).waiting
        gpu = info.offer.gpu if info.offer is not None else None
        note = self.policy.on_launched(
            name,
            done.ready_at,
            price_per_hour=info.price_per_hour,
            gpu=gpu,
            endpoints=len(info.endpoints),
            waiting=waiting,
        )
        if note is None:  # shut down or lost while launching
            await self._down(Down(name, "unwanted"))
            return
        note.times["cluster_provisioned_at"] = done.provisioned_at
        await self._annotate(note)
        cluster = self.policy.clusters[name]
        self.hooks.start_cluster(
            ClusterRuntime(
                name, [e.url for e in info.endpoints], info.price_per_hour, gpu, cluster.cold_share
            )
        )
        event(
            "cluster.ready",
            cluster=name,
            gpu=gpu,
            price_per_hour=info.price_per_hour,
            cold_start_s=done.ready_at - cluster.requested_at,
            warmup_s=None if done.warmup_s is None else round(done.warmup_s, 3),
        )

    async def _down(self, action: Down) -> None:
        await self.hooks.stop_cluster(action.name)
        try:
            idle_down = getattr(self.ops, "idle_down", None)
            if action.reason == "idle" and idle_down is not None:  # stop or down, by price
                arrivals = await asyncio.to_thread(self._arrivals)
                d = await asyncio.to_thread(
                    idle_down, action.name, arrivals, self.policy.eta.cold_start()
                )
                event("cluster.idle_decision", cluster=action.name, **d.to_json())
            else:
                await asyncio.to_thread(self.ops.down, action.name)
        except Exception as exc:
            self._orphans.add(action.name)
            event(
                "cluster.down_failed",
                level=logging.WARNING,
                cluster=action.name,
                error=error_text(exc),
            )
            return
        self._orphans.discard(action.name)
        event("cluster.down", cluster=action.name, reason=action.reason)

    async def _check_clusters(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for c in list(self.policy.clusters.values()):
            if c.phase not in (Phase.READY, Phase.DRAINING):
                continue
            try:
                info = await asyncio.to_thread(self.ops.status, c.name)
            except Exception as exc:
                event(
                    "cluster.status_failed",
                    level=logging.WARNING,
                    cluster=c.name,
                    error=error_text(exc),
                )
                continue
            if info.state in LOST:
                detail = info.detail or info.state.value
                event("cluster.lost", level=logging.WARNING, cluster=c.name, detail=detail)
                await self._record_loss(c.name, detail)
                actions.extend(self.policy.on_lost(c.name, now, detail))
        return actions
