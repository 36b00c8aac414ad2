"""The launch service: plan → launch → wait until healthy → record; down; status.

The CLI (``nomad plan/up/down/status``) and the autoscaler call these
functions with any :class:`~nomad.backends.base.Backend`, so the same code
path runs against SkyPilot, the local box, an SSH pool, or ``FakeBackend``.
Local state (one JSON per cluster, :mod:`nomad.backends.state`) is written
only once every ComfyUI endpoint answers ``/system_stats``, so a half-started
cluster is never recorded as usable.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from nomad.backends import state
from nomad.backends.base import Backend, ClusterInfo, ClusterState, LaunchSpec, Offer
from nomad.config.schema import NomadConfig
from nomad.errors import (
    BackendError,
    BudgetError,
    ClusterNotFoundError,
    NoCapacityError,
    NomadError,
    QuotaError,
    UsageError,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 900.0  # provisioning + a large image pull can take minutes
HEALTH_INTERVAL_S = 2.0
RETRYABLE = (NoCapacityError, QuotaError)
Events = Callable[[str], None]


class UnhealthyError(BackendError):
    """The cluster came up but its ComfyUI endpoints never answered /system_stats."""


@dataclass
class Attempt:
    """One launch try, for the report when every offer failed."""

    offer: Offer | None
    error: str


@dataclass
class ClusterReport:
    """What ``nomad status``/``down`` show for one cluster."""

    info: ClusterInfo
    uptime_s: float | None
    spend_usd: float | None
    queue: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **state.info_to_json(self.info),
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 1),
            "spend_usd": None if self.spend_usd is None else round(self.spend_usd, 4),
            **({"queue": self.queue} if self.queue is not None else {}),
        }


# -- building the spec -------------------------------------------------------------


def cluster_name(cfg: NomadConfig) -> str:
    """``infra.cluster_name`` or ``nomad-<project>`` (SkyPilot-safe: lowercase, dashes)."""
    return cfg.infra.cluster_name or f"nomad-{cfg.project}".replace(".", "-").replace("_", "-")


def last_push(data_dir: Path) -> dict[str, Any] | None:
    """The images helper's record of the last push ({ref, registry, repository, digest, size_bytes})."""
    try:
        images = importlib.import_module("nomad.images")
        fn = getattr(images, "last_pushed", None)
        if fn is not None:
            result: dict[str, Any] | None = fn(data_dir)
            return result
    except ImportError:
        pass
    path = Path(data_dir) / "images" / "last_push.json"
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def spec_from_config(
    cfg: NomadConfig, data_dir: Path, *, need_image: bool = True, image_ref: str | None = None
) -> LaunchSpec:
    """A LaunchSpec from ``infra`` + the last pushed image (pinned by digest)."""
    from nomad.backends.skypilot.task import disk_gb_for_image

    infra = cfg.infra
    pushed = last_push(data_dir) or {}
    ref = image_ref or _pinned_ref(pushed)
    if need_image and not ref:
        raise UsageError(
            "no pushed image to launch",
            hint="run `nomad build` and `nomad push` first (or pass --image REGISTRY/REPO@sha256:…)",
        )
    reg = cfg.registry
    return LaunchSpec(
        cluster_name=cluster_name(cfg),
        image_ref=ref or "",
        registry_server=pushed.get("registry") or _host(reg.url),
        registry_username=reg.username,
        registry_password=reg.password.get_secret_value() if reg.password else None,
        gpus=tuple(infra.gpus),
        ordered=infra.ordered,
        gpu_count=infra.gpu_count if infra.backend != "local" else max(infra.local.gpus, 1),
        spot=infra.spot,
        max_price_per_hour=infra.max_price_per_hour,
        min_vram_gb=infra.min_vram_gb,
        clouds=tuple(infra.clouds),
        regions=tuple(infra.regions),
        idle_minutes=infra.idle_minutes,
        disk_gb=infra.disk_gb or disk_gb_for_image(pushed.get("size_bytes")),
        comfy_port=cfg.image.comfyui.port,
    )


def _pinned_ref(pushed: dict[str, Any]) -> str | None:
    ref = pushed.get("ref")
    digest = pushed.get("digest")
    if ref and "@sha256:" in ref:
        return str(ref)
    if pushed.get("registry") and pushed.get("repository") and digest:
        return f"{pushed['registry']}/{pushed['repository']}@{digest}"
    return str(ref) if ref else None


def _host(url: str | None) -> str | None:
    return httpx.URL(url).netloc.decode() if url else None


# -- plan ----------------------------------------------------------------------------


def plan(
    backend: Backend,
    spec: LaunchSpec,
    *,
    bench_paths: list[str] | None = None,
    rank_workflow: str | None = None,
) -> list[Offer]:
    """Ranked offers; with benchmark results each carries $/image, optionally ranked by one workflow."""
    offers = backend.plan(spec)
    if bench_paths:
        offers = with_price_per_image(offers, bench_paths)
    return rank_by_image(offers, rank_workflow) if rank_workflow else offers


def rank_by_image(offers: list[Offer], workflow: str) -> list[Offer]:
    """Cheapest $/image for ``workflow`` first; offers without a benchmark keep their order, last.

    The cheapest GPU per hour is often not the cheapest per image: a faster GPU
    at a higher hourly price can finish each image for less.
    """
    known = [o for o in offers if workflow in o.price_per_image]
    if not known:
        raise UsageError(
            f"no benchmark result covers workflow {workflow!r} on any offered GPU",
            hint="run `nomad bench` on one of these GPUs, or pass --bench @reference",
        )
    known.sort(key=lambda o: o.price_per_image[workflow])
    return known + [o for o in offers if workflow not in o.price_per_image]


def with_price_per_image(offers: list[Offer], bench_paths: list[str]) -> list[Offer]:
    """Attach $/image from ``nomad.bench`` results when that module exists (else unchanged)."""
    try:
        bench = importlib.import_module("nomad.bench")
    except ImportError:
        return offers
    load, price = getattr(bench, "load_results", None), getattr(bench, "price_per_image", None)
    if load is None or price is None:
        return offers
    results = load(bench_paths)
    out = []
    for o in offers:
        try:
            per = price(results, gpu=o.gpu, price_per_hour=o.price_per_hour)
        except (TypeError, KeyError, ValueError) as exc:  # signature drift: degrade, don't crash
            log.debug("price_per_image unavailable: %s", exc)
            return offers
        out.append(replace(o, price_per_image=dict(per or {})))
    return out


# -- up --------------------------------------------------------------------------------


def up(
    backend: Backend,
    spec: LaunchSpec,
    data_dir: Path,
    *,
    max_attempts: int = 3,
    health_timeout_s: float = HEALTH_TIMEOUT_S,
    health_client: httpx.Client | None = None,
    events: Events | None = None,
    clock: Callable[[], float] = time.time,
    guard: Callable[[], None] | None = None,
) -> ClusterReport:
    """Launch on the best offer, falling back to the next on capacity/quota/health failure.

    ``guard`` runs before anything new is launched (not when the cluster is
    already up) and refuses by raising, e.g. :func:`check_daily_budget`.
    """
    say = events or (lambda _msg: None)
    existing = _reuse(backend, spec, data_dir, clock)
    if existing is not None:
        say(f"{spec.cluster_name} is already up")
        return existing
    if guard is not None:
        guard()
    offers = _within_budget(backend.plan(spec), spec)
    offers = _deprioritise(offers, state.load(data_dir, spec.cluster_name))
    attempts: list[Attempt] = []
    candidates: list[Offer | None] = list(offers[:max_attempts]) or [None]
    for offer in candidates:
        say(f"launching {spec.cluster_name} on {_describe(offer)}")
        try:
            info = _launch_one(backend, spec, offer, health_timeout_s, health_client, clock)
        except (*RETRYABLE, UnhealthyError) as exc:
            attempts.append(Attempt(offer, str(exc)))
            say(f"  failed: {exc}; trying the next offer")
            continue
        state.save(data_dir, info)
        return ClusterReport(info, uptime_s=0.0, spend_usd=0.0, attempts=attempts)
    raise NoCapacityError(
        f"could not launch {spec.cluster_name} on {len(attempts)} offer(s): "
        + "; ".join(f"{_describe(a.offer)}: {a.error}" for a in attempts),
        hint="allow more GPUs/clouds/regions or a higher infra.max_price_per_hour, then `nomad up` again",
    )


def _launch_one(
    backend: Backend,
    spec: LaunchSpec,
    offer: Offer | None,
    timeout_s: float,
    client: httpx.Client | None,
    clock: Callable[[], float],
) -> ClusterInfo:
    info = backend.launch(spec, offer)
    try:
        wait_healthy([e.url for e in info.endpoints], timeout_s=timeout_s, client=client)
    except UnhealthyError:
        backend.teardown(spec.cluster_name)  # never leave a paid, broken node behind
        raise
    info.state = ClusterState.UP
    info.offer = info.offer or offer
    info.started_at = info.started_at or clock()
    if offer is not None and not info.price_per_hour:
        info.price_per_hour = offer.price_per_hour
    return info


def _reuse(
    backend: Backend, spec: LaunchSpec, data_dir: Path, clock: Callable[[], float]
) -> ClusterReport | None:
    rec = state.load(data_dir, spec.cluster_name)
    if rec is None or rec.state != ClusterState.UP:
        return None
    if backend.status(spec.cluster_name).state != ClusterState.UP:
        return None
    return _report(rec, clock)


def affordable_offers(backend: Backend, spec: LaunchSpec) -> list[Offer]:
    """The backend's ranked offers within ``max_price_per_hour``; never empty (raises instead)."""
    offers = _within_budget(backend.plan(spec), spec)
    if not offers:
        raise NoCapacityError(
            f"{backend.name} offered no GPU for {spec.cluster_name}",
            hint="allow more GPUs/clouds/regions in infra, then try again",
        )
    return offers


def spend_today(
    cfg: NomadConfig, data_dir: Path, *, clock: Callable[[], float] = time.time
) -> float:
    """USD spent on GPUs since 00:00 UTC: clusters recorded as up (their time up today) plus
    clusters the autoscaler already closed today (its ledger in the queue's state table)."""
    now = clock()
    midnight = now - now % 86400.0
    live = sum(
        rec.price_per_hour * max(0.0, now - max(rec.started_at, midnight)) / 3600.0
        for rec in state.load_all(data_dir)
        if rec.state == ClusterState.UP and rec.started_at is not None
    )
    return live + _closed_today(cfg, data_dir, now)


def _closed_today(cfg: NomadConfig, data_dir: Path, now: float) -> float:
    if cfg.queue.url is None and not (Path(data_dir) / "queue.db").exists():
        return 0.0  # no queue, so no autoscaler has spent anything
    from nomad.queue import open_queue

    queue = open_queue(cfg, data_dir)
    try:
        doc = queue.get_state("autoscaler", "history") or {}
    finally:
        queue.close()
    spent = doc.get("spent") if isinstance(doc, dict) else None
    value = spent.get(str(int(now // 86400.0))) if isinstance(spent, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def check_daily_budget(
    cfg: NomadConfig, data_dir: Path, *, clock: Callable[[], float] = time.time
) -> None:
    """Refuse a new launch once today's spend has reached ``infra.daily_budget``."""
    budget = cfg.infra.daily_budget
    if budget is None:
        return
    spent = spend_today(cfg, data_dir, clock=clock)
    if spent >= budget:
        raise BudgetError(
            f"daily budget ${budget:.2f} reached (${spent:.2f} spent today); it resets at 00:00 UTC",
            hint="raise infra.daily_budget, or run `nomad status` if a recorded cluster is already gone",
        )


def _within_budget(offers: list[Offer], spec: LaunchSpec) -> list[Offer]:
    """Never launch above ``max_price_per_hour``, whatever the backend offered."""
    cap = spec.max_price_per_hour
    if not offers and cap is not None:
        raise BudgetError(
            "the backend offered no priced GPU, so infra.max_price_per_hour cannot be checked",
            hint="check infra.gpus/clouds (see `nomad plan`), or unset the cap to let the backend choose",
        )
    kept = [o for o in offers if cap is None or o.price_per_hour <= cap]
    if offers and not kept:
        cheapest = min(o.price_per_hour for o in offers)
        raise BudgetError(
            f"the cheapest offer costs ${cheapest:.2f}/hour, above infra.max_price_per_hour ${cap}",
            hint="raise infra.max_price_per_hour or allow cheaper GPUs",
        )
    return kept


def _deprioritise(offers: list[Offer], previous: ClusterInfo | None) -> list[Offer]:
    """After a preemption/failure, try that same offer last."""
    if previous is None or previous.offer is None or previous.state == ClusterState.UP:
        return offers
    bad = previous.offer
    key = (bad.cloud, bad.region, bad.instance_type, bad.gpu)
    return [o for o in offers if (o.cloud, o.region, o.instance_type, o.gpu) != key] + [
        o for o in offers if (o.cloud, o.region, o.instance_type, o.gpu) == key
    ]


def wait_healthy(
    urls: list[str],
    *,
    timeout_s: float = HEALTH_TIMEOUT_S,
    interval_s: float = HEALTH_INTERVAL_S,
    client: httpx.Client | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once every URL answers ``GET /system_stats`` with JSON; bounded by ``timeout_s``."""
    if not urls:
        raise UnhealthyError(
            "the backend reported no ComfyUI endpoints", hint="check the task's ports"
        )
    own = client is None
    http = client or httpx.Client(timeout=5.0)
    deadline = clock() + timeout_s
    pending = list(urls)
    last_error = ""
    try:
        while True:
            pending, last_error = _probe(http, pending, last_error)
            if not pending:
                return
            if clock() >= deadline:
                raise UnhealthyError(
                    f"ComfyUI did not answer /system_stats within {timeout_s:.0f}s at "
                    f"{', '.join(pending)} ({last_error})",
                    hint="check the node's logs (sky logs CLUSTER) and the image's ComfyUI command",
                )
            sleep(interval_s)
    finally:
        if own:
            http.close()


def _probe(http: httpx.Client, urls: list[str], last_error: str) -> tuple[list[str], str]:
    left = []
    for url in urls:
        try:
            resp = http.get(url.rstrip("/") + "/system_stats")
            if resp.status_code == 200 and isinstance(resp.json(), dict):
                continue
            last_error = f"HTTP {resp.status_code}"
        except (httpx.HTTPError, ValueError) as exc:
            last_error = type(exc).__name__
        left.append(url)
    return left, last_error


# -- down / status ---------------------------------------------------------------------


def down(
    backend: Backend, data_dir: Path, name: str, *, clock: Callable[[], float] = time.time
) -> ClusterReport:
    """Tear down (idempotent) and forget the record; report time up and money spent."""
    rec = state.load(data_dir, name)
    backend.teardown(name)
    state.remove(data_dir, name)
    info = rec or ClusterInfo(name=name, backend=backend.name, state=ClusterState.GONE)
    report = _report(info, clock)
    report.info.state = ClusterState.GONE
    return report


def status(
    backend_for: Callable[[str], Backend],
    data_dir: Path,
    name: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    config: NomadConfig | None = None,
) -> list[ClusterReport]:
    """Every recorded cluster (or ``name``), refreshed from its backend, with uptime and spend."""
    recs = [r for r in [state.load(data_dir, name)] if r] if name else state.load_all(data_dir)
    if name and not recs:
        raise ClusterNotFoundError(
            f"no cluster named {name!r} is recorded", hint="see `nomad status`"
        )
    reports = []
    for rec in recs:
        merged = _refresh(backend_for(rec.backend), rec)
        if merged.state != rec.state or merged.detail != rec.detail:
            state.save(data_dir, merged)
        reports.append(_report(merged, clock))
    queue = queue_summary(config, data_dir) if config is not None else None
    for r in reports:
        r.queue = queue
    return reports


def _refresh(backend: Backend, rec: ClusterInfo) -> ClusterInfo:
    """Merge the provider's view into the record; a vanished spot cluster was preempted."""
    try:
        live = backend.status(rec.name)
    except NomadError as exc:
        return replace(rec, detail=f"could not refresh: {exc.message}")
    if live.state == ClusterState.GONE and rec.state in (
        ClusterState.UP,
        ClusterState.PROVISIONING,
    ):
        spot = bool(rec.offer and rec.offer.spot)
        return replace(
            rec,
            state=ClusterState.PREEMPTED if spot else ClusterState.FAILED,
            detail="spot capacity reclaimed by the provider (the cluster is gone)"
            if spot
            else "the cluster disappeared (stopped by autostop/watchdog or removed outside nomad)",
        )
    if live.state == ClusterState.GONE:
        return rec
    return replace(
        rec, state=live.state, detail=live.detail, endpoints=live.endpoints or rec.endpoints
    )


def _report(info: ClusterInfo, clock: Callable[[], float]) -> ClusterReport:
    if info.started_at is None:
        return ClusterReport(info, uptime_s=None, spend_usd=None)
    uptime = max(0.0, clock() - info.started_at)
    return ClusterReport(info, uptime_s=uptime, spend_usd=uptime / 3600.0 * info.price_per_hour)


# >>> queue hook (serve area): nomad.serve.summary.queue_summary(config, data_dir) -> dict | None
def queue_summary(config: NomadConfig, data_dir: Path) -> dict[str, Any] | None:
    """Queue info for ``nomad status`` when the serve module provides it; None otherwise."""
    try:
        mod = importlib.import_module("nomad.serve.summary")
    except ImportError:
        return None
    fn = getattr(mod, "queue_summary", None)
    if fn is None:
        return None
    try:
        result: dict[str, Any] | None = fn(config, data_dir)
    except NomadError as exc:
        return {"error": exc.message}
    return result


# <<< queue hook


def _describe(offer: Offer | None) -> str:
    if offer is None:
        return "the backend's choice"
    where = "/".join(p for p in (offer.cloud, offer.region) if p)
    return f"{offer.gpu_count}x {offer.gpu} on {where} (${offer.price_per_hour:.2f}/h{', spot' if offer.spot else ''})"
