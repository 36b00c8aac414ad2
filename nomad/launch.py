"""The launch service: plan → ledger row → launch → wait until healthy; down; status.

The CLI (``nomad plan/up/down/status``), the autoscaler and the bot's admin
commands call these functions with any :class:`~nomad.backends.base.Backend`,
so the same code path runs against SkyPilot, the local box, an SSH pool, or
``FakeBackend``. Every launch try goes through :func:`launch_recorded`: the
cluster ledger (:mod:`nomad.queue.ledger`) gets its row before the backend is
called, and a try that fails is torn down and confirmed gone before anything
else happens (docs/lifecycle.md). The per-cluster JSON files
(:mod:`nomad.backends.state`) are only a cache of the endpoints of clusters
that serve, for ``nomad run``; money and existence are the ledger's.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from nomad.backends import state
from nomad.backends.base import Backend, ClusterInfo, ClusterState, Endpoint, LaunchSpec, Offer
from nomad.config.schema import NomadConfig
from nomad.errors import (
    BackendError,
    BudgetError,
    ClusterNotFoundError,
    NoCapacityError,
    NoCloudAccessError,
    NomadError,
    PrivacyError,
    QuotaError,
    UsageError,
)
from nomad.node._modes import node_envs
from nomad.osutil import pid_alive
from nomad.queue.ledger import (
    ClusterLedger,
    LedgerConflict,
    LedgerRow,
    LedgerState,
    has_database,
    open_ledger,
)

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 900.0  # provisioning + a large image pull can take minutes
HEALTH_INTERVAL_S = 2.0
RETRYABLE = (NoCapacityError, QuotaError)
Events = Callable[[str], None]


class UnhealthyError(BackendError):
    """The cluster came up but its ComfyUI endpoints never answered /system_stats."""


class StartupFailedError(UnhealthyError):
    """A server process or container exited while starting (or the wake was called off)."""


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
            "requested_by": self.info.extra.get("requested_by"),
            "ledger_state": self.info.extra.get("ledger_state"),
            **({"queue": self.queue} if self.queue is not None else {}),
        }


# -- building the spec -------------------------------------------------------------


def cluster_name(cfg: NomadConfig) -> str:
    """``infra.cluster_name`` or ``nomad-<project>`` (SkyPilot-safe: lowercase, dashes)."""
    return cfg.infra.cluster_name or f"nomad-{cfg.project}".replace(".", "-").replace("_", "-")


def last_push(
    data_dir: Path, project: str | None = None, config_path: Path | None = None
) -> dict[str, Any] | None:
    """The images helper's record of ``project``'s last push ({ref, registry, repository, digest, size_bytes})."""
    try:
        images = importlib.import_module("nomad.images")
        fn = getattr(images, "last_pushed", None)
        if fn is not None:
            result: dict[str, Any] | None = fn(data_dir, project, config_path)
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
    cfg: NomadConfig,
    data_dir: Path,
    *,
    need_image: bool = True,
    image_ref: str | None = None,
    config_path: Path | None = None,
) -> LaunchSpec:
    """A LaunchSpec from ``infra`` + the last pushed image (pinned by digest)."""
    from nomad.backends.skypilot.task import disk_gb_for_image
    from nomad.images._profiles import start_env

    infra = cfg.infra
    pushed = last_push(data_dir, cfg.project, config_path) or {}  # this project's, never another's
    ref = image_ref or _pinned_ref(pushed)
    if need_image and not ref:
        raise UsageError(
            f"no pushed image to launch for project {cfg.project!r}",
            hint="run `nomad build` and `nomad push` in this project first (or pass --image REGISTRY/REPO@sha256:…)",
        )
    reg = cfg.registry
    hidden = _hidden(cfg, data_dir)
    envs = {**node_envs(cfg), **start_env(cfg.image.base, cfg.image.models_root)}
    if hidden is not None or cfg.privacy.strips_metadata():
        from nomad.privacy.node import comfy_command

        envs["NOMAD_COMFY_CMD"] = comfy_command(
            envs["NOMAD_COMFY_CMD"],
            loopback=hidden is not None,
            disable_metadata=cfg.privacy.strips_metadata(),
        )
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
        idle_minutes=infra.idle_minutes,  # the autoscaler's; backends add the node margin
        disk_gb=infra.disk_gb or disk_gb_for_image(pushed.get("size_bytes")),
        comfy_port=cfg.image.comfyui.port,
        # node.*: baked/fetched weights, cache (nomad.node, docs/cold-start.md); how ComfyUI starts
        envs=envs,
        placement=_placement(cfg),
        wide_failover=infra.wide_failover,
        hidden=hidden,
    )


def _hidden(cfg: NomadConfig, data_dir: Path) -> Any:
    """``privacy.node`` for the spec: how the node publishes ComfyUI (None: open ports)."""
    from nomad.privacy.node import from_config

    return from_config(cfg.privacy, data_dir)


def _placement(cfg: NomadConfig) -> Any:
    """``infra.placement`` as a :class:`nomad.placement.Placement` (None: rank by $/hour)."""
    from nomad.placement import from_config

    return from_config(cfg)


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
            # one job per GPU at once: a node of n GPUs costs its price / n per concurrent job
            per_gpu = o.price_per_hour / max(1, o.gpu_count)
            per = price(results, gpu=o.gpu, price_per_hour=per_gpu)
        except (TypeError, KeyError, ValueError) as exc:  # signature drift: degrade, don't crash
            log.debug("price_per_image unavailable: %s", exc)
            return offers
        out.append(replace(o, price_per_image=dict(per or {})))
    return out


# -- up ----------------------------------------------------------------------------------

TEARDOWN_ATTEMPTS = 3
TEARDOWN_BACKOFF_S = 2.0
# launch errors after which another offer may still work (anything else is the same everywhere)
NEXT_OFFER_ERRORS = (BackendError,)
SAME_EVERYWHERE = (NoCloudAccessError, BudgetError, LedgerConflict)
Sleep = Callable[[float], None]


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
    ledger: ClusterLedger | None = None,
    requested_by: str = "up",
    sleep: Sleep = time.sleep,
) -> ClusterReport:
    """Launch on the best offer, falling back to the next when one fails; every try is in the ledger.

    ``guard`` runs before anything new is launched (not when the cluster is
    already up) and refuses by raising, e.g. :func:`check_daily_budget`. A try
    that fails after the backend may have created something is torn down
    (bounded, retried) before the next offer; if that teardown cannot be
    confirmed nothing else is launched and the ledger row stays open.
    """
    own = ledger is None
    book = ledger or open_ledger(None, data_dir, clock=clock)
    try:
        return _up(
            backend, spec, data_dir, book, max_attempts=max_attempts,
            health_timeout_s=health_timeout_s, health_client=health_client,
            say=events or (lambda _msg: None), clock=clock, guard=guard,
            requested_by=requested_by, sleep=sleep,
        )  # fmt: skip
    finally:
        if own:
            book.close()


def _up(
    backend: Backend,
    spec: LaunchSpec,
    data_dir: Path,
    book: ClusterLedger,
    *,
    max_attempts: int,
    health_timeout_s: float,
    health_client: httpx.Client | None,
    say: Events,
    clock: Callable[[], float],
    guard: Callable[[], None] | None,
    requested_by: str,
    sleep: Sleep,
) -> ClusterReport:
    existing = _reuse(backend, spec, data_dir, book, clock, sleep)
    if existing is not None:
        say(f"{spec.cluster_name} is already up")
        return existing
    if guard is not None:
        guard()
    offers, why = ranked_offers(backend, spec)
    say(f"placement: {why}")
    offers = _deprioritise(offers, book.last(spec.cluster_name))
    from nomad.placement import restart_first

    offers = restart_first(offers, book.last(spec.cluster_name))  # a stopped cluster: its offer
    attempts: list[Attempt] = []
    candidates: list[Offer | None] = list(offers[:max_attempts]) or [None]
    for offer in candidates:
        say(f"launching {spec.cluster_name} on {_describe(offer)}")
        try:
            info = launch_recorded(
                backend, spec, offer, book, requested_by=requested_by,
                health_timeout_s=health_timeout_s, health_client=health_client,
                clock=clock, sleep=sleep,
            )  # fmt: skip
        except SAME_EVERYWHERE:
            raise
        except TeardownUnconfirmed:
            raise
        except NEXT_OFFER_ERRORS as exc:
            attempts.append(Attempt(offer, exc.message))
            say(f"  failed: {exc.message}; torn down, trying the next offer")
            continue
        state.save(data_dir, info)
        return ClusterReport(info, uptime_s=0.0, spend_usd=0.0, attempts=attempts)
    wide = wide_spec(backend, spec, offers[len(candidates) :]) if attempts else None
    if wide is not None:  # infra.wide_failover: SkyPilot's own failover over the rest
        n = len(wide.any_of)
        say(f"launching {spec.cluster_name} with SkyPilot's failover over {n} more offer(s)")
        try:
            info = launch_recorded(
                backend, wide, None, book, requested_by=requested_by,
                health_timeout_s=health_timeout_s, health_client=health_client,
                clock=clock, sleep=sleep,
            )  # fmt: skip
        except (*SAME_EVERYWHERE, TeardownUnconfirmed):
            raise
        except NEXT_OFFER_ERRORS as exc:
            attempts.append(Attempt(None, f"any of {len(wide.any_of)} offers: {exc.message}"))
        else:
            state.save(data_dir, info)
            return ClusterReport(info, uptime_s=0.0, spend_usd=0.0, attempts=attempts)
    raise NoCapacityError(
        f"could not launch {spec.cluster_name} on {len(attempts)} offer(s): "
        + "; ".join(f"{_describe(a.offer)}: {a.error}" for a in attempts),
        hint="allow more GPUs/clouds/regions or a higher infra.max_price_per_hour, then `nomad up` again",
    )


class TeardownUnconfirmed(BackendError):
    """A cluster nomad asked to tear down may still exist: its ledger row stays open."""


def launch_recorded(
    backend: Backend,
    spec: LaunchSpec,
    offer: Offer | None,
    book: ClusterLedger,
    *,
    requested_by: str,
    health_timeout_s: float | None = HEALTH_TIMEOUT_S,
    health_client: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = time.sleep,
    failed: Callable[[], str | None] | None = None,
) -> ClusterInfo:
    """One launch try, the way every path launches: ledger row first, then the backend call,
    then health; any failure (or an interrupt) tears the cluster down and records it.

    The health wait ends early when ``failed`` (default: the backend's
    ``startup_failure``) gives a reason, e.g. a server that exited.

    Raises the launch's own error once the teardown is confirmed (the row is
    closed), or :class:`TeardownUnconfirmed` when it is not (the row stays open).
    """
    row = book.intend(spec.cluster_name, backend.name, requested_by, offer)
    try:
        info = backend.launch(spec, offer)
        urls = [e.url for e in info.endpoints]
        book.provisioned(row.id, urls, info.price_per_hour or None)
        if health_timeout_s is not None:
            wait_healthy(
                urls,
                timeout_s=health_timeout_s,
                client=health_client,
                failed=failed or (lambda: backend.startup_failure(spec.cluster_name)),
            )
    except BaseException as exc:
        why = f"launch failed: {_error_text(exc)}"
        book.mark(row.id, LedgerState.FAILED, why)
        try:
            retire(backend, book, row.id, spec.cluster_name, why, sleep=sleep)
        except TeardownUnconfirmed as lost:
            raise TeardownUnconfirmed(f"{why}; then {lost.message}", hint=lost.hint) from exc
        raise
    info.state = ClusterState.UP
    info.offer = info.offer or offer
    info.started_at = info.started_at or clock()
    if offer is not None and not info.price_per_hour:
        info.price_per_hour = offer.price_per_hour
    info.extra = {**info.extra, "ledger_id": row.id, "requested_by": requested_by}
    book.mark_up(row.id, [e.url for e in info.endpoints], info.price_per_hour or None)
    return info


def teardown_confirmed(
    backend: Backend,
    name: str,
    *,
    attempts: int = TEARDOWN_ATTEMPTS,
    backoff_s: float = TEARDOWN_BACKOFF_S,
    sleep: Sleep = time.sleep,
) -> None:
    """``teardown`` then ``status`` until the backend says GONE; bounded retries with backoff.

    Raises :class:`TeardownUnconfirmed` (with the last error) when it never does.
    """
    last = "the backend still reports it"
    for i in range(max(1, attempts)):
        if i:
            sleep(backoff_s * 2 ** (i - 1))
        try:
            backend.teardown(name)
            if backend.status(name).state is ClusterState.GONE:
                return
        except NomadError as exc:
            last = exc.message
        except Exception as exc:  # a vendor error that escaped its seam: still retried
            last = _error_text(exc)
    raise TeardownUnconfirmed(
        f"could not confirm {name} is gone after {max(1, attempts)} teardown tries ({last})",
        hint=f"it may still be billing: run `nomad down {name}` (or check with the provider)",
    )


def retire(
    backend: Backend,
    book: ClusterLedger,
    row_id: str,
    name: str,
    reason: str,
    *,
    sleep: Sleep = time.sleep,
    attempts: int = TEARDOWN_ATTEMPTS,
) -> None:
    """Tear a ledger row's cluster down and close the row once the backend confirms it."""
    try:
        teardown_confirmed(backend, name, attempts=attempts, sleep=sleep)
    except TeardownUnconfirmed as exc:
        book.mark(
            row_id,
            LedgerState.FAILED if "launch failed" in reason else LedgerState.STOPPING,
            f"{reason}; {exc.message}",
        )
        raise
    book.confirm_gone(row_id, reason)


def _reuse(
    backend: Backend,
    spec: LaunchSpec,
    data_dir: Path,
    book: ClusterLedger,
    clock: Callable[[], float],
    sleep: Sleep,
) -> ClusterReport | None:
    """The open cluster of that name if it serves; otherwise make sure it is gone first."""
    row = book.find_open(spec.cluster_name)
    if row is None:
        return None
    if row.state is LedgerState.LAUNCHING and in_flight(row, clock()):
        raise LedgerConflict(
            f"{spec.cluster_name} is being launched by {row.owner} (started "
            f"{clock() - row.started_at:.0f} s ago)",
            hint="wait for that launch, or `nomad status` to see it",
        )
    if row.state is LedgerState.UP and backend.status(spec.cluster_name).state is ClusterState.UP:
        return _report(row_info(row), clock)
    why = f"{row.detail}; replaced by a new launch" if row.detail else "replaced by a new launch"
    retire(backend, book, row.id, spec.cluster_name, why, sleep=sleep)
    state.remove(data_dir, spec.cluster_name)
    return None


def in_flight(row: LedgerRow, now: float, *, stale_after_s: float = HEALTH_TIMEOUT_S + 300) -> bool:
    """Whether a ``launching`` row's launch may still be running (its process is alive here,
    or, for another host, it was written recently)."""
    if row.state is not LedgerState.LAUNCHING:
        return False
    host, _, rest = (row.owner or "").partition(":")
    pid = rest.split(":", 1)[0]
    if host == socket.gethostname() and pid.isdigit():
        return int(pid) == os.getpid() or pid_alive(int(pid))
    return now - row.updated_at < stale_after_s


def ranked_offers(backend: Backend, spec: LaunchSpec) -> tuple[list[Offer], str]:
    """The backend's offers within ``max_price_per_hour``, cheapest per job first when benchmark
    results exist (``infra.placement``), else in the backend's $/hour order; plus why."""
    from nomad.placement import order_offers

    return order_offers(_within_budget(backend.plan(spec), spec), spec.placement)


def wide_spec(backend: Backend, spec: LaunchSpec, rest: list[Offer]) -> LaunchSpec | None:
    """With ``infra.wide_failover``: the spec of one SkyPilot any-of launch over the affordable
    offers nomad did not try (all within ``max_price_per_hour``: each is pinned), else None.
    Only SkyPilot's offers take part (in a fleet, the cloud member's)."""
    if not spec.wide_failover or backend.name not in ("skypilot", "fleet"):
        return None
    from nomad.backends.fleet import member_key

    cloud = tuple(o for o in rest if member_key(o) == "skypilot")
    return replace(spec, any_of=cloud) if cloud else None


def affordable_offers(backend: Backend, spec: LaunchSpec) -> list[Offer]:
    """:func:`ranked_offers` without the explanation; never empty (raises instead)."""
    offers, why = ranked_offers(backend, spec)
    log.info("placement: %s", why)
    if not offers:
        raise NoCapacityError(
            f"{backend.name} offered no GPU for {spec.cluster_name}",
            hint="allow more GPUs/clouds/regions in infra, then try again",
        )
    return offers


def spend_today(
    cfg: NomadConfig, data_dir: Path, *, clock: Callable[[], float] = time.time
) -> float:
    """USD spent on GPUs since 00:00 UTC, from the cluster ledger: every cluster of the
    project, open or closed, whoever launched it (per started minute at its recorded price)."""
    if not has_database(cfg, data_dir):
        return 0.0  # nothing was ever launched from here
    book = open_ledger(cfg, data_dir, clock=clock)
    try:
        return book.spend_today(clock())
    finally:
        book.close()


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
            hint="raise infra.daily_budget; `nomad status` shows what was spent on which cluster",
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


def _deprioritise(offers: list[Offer], previous: LedgerRow | None) -> list[Offer]:
    """After a loss or failed launch on an offer, try that same offer last."""
    if (
        previous is None
        or previous.offer is None
        or not (previous.detail or "").startswith(BAD_ENDINGS)
    ):
        return offers
    bad = previous.offer
    key = (bad.cloud, bad.region, bad.instance_type, bad.gpu)
    return [o for o in offers if (o.cloud, o.region, o.instance_type, o.gpu) != key] + [
        o for o in offers if (o.cloud, o.region, o.instance_type, o.gpu) == key
    ]


BAD_ENDINGS = ("lost", "launch failed")


def health_client(cfg: NomadConfig) -> httpx.Client | None:
    """The health checks' HTTP client: through the proxy (with its handshake deadline) when
    privacy is on, so an ``.onion`` endpoint is reachable and nothing goes to DNS; else None."""
    from nomad import privacy

    proxy = privacy.proxy_for(cfg.privacy, "comfy")
    if proxy is None:
        return None
    privacy.configure(cfg.privacy)
    return httpx.Client(timeout=5.0, **privacy.sync_client_kwargs(proxy))


def wait_healthy(
    urls: list[str],
    *,
    timeout_s: float = HEALTH_TIMEOUT_S,
    interval_s: float = HEALTH_INTERVAL_S,
    client: httpx.Client | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    failed: Callable[[], str | None] | None = None,
) -> None:
    """Return once every URL answers ``GET /system_stats`` with JSON; bounded by ``timeout_s``.

    ``failed`` (e.g. ``backend.startup_failure(name)``, or a shutdown flag) is
    asked after every round: a reason ends the wait at once with that reason.
    """
    if not urls:
        raise UnhealthyError(
            "the backend reported no ComfyUI endpoints", hint="check the task's ports"
        )
    own = client is None
    http = client or httpx.Client(timeout=5.0, trust_env=False)  # no proxy from the environment
    deadline = clock() + timeout_s
    pending = list(urls)
    last_error = ""
    try:
        while True:
            pending, last_error = _probe(http, pending, last_error)
            if not pending:
                return
            reason = failed() if failed is not None else None
            if reason:
                raise StartupFailedError(
                    f"ComfyUI did not come up: {reason}",
                    hint="fix what the log shows (see `nomad status`), then try again",
                )
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


def proxy_is_silent(exc: Exception) -> bool:
    """A SOCKS proxy that accepted and never answered even the greeting (the handshake deadline
    ran out), as opposed to one that answered "host unreachable" or took the greeting and is
    still trying the destination: a hidden service whose descriptor is not published yet (or is
    a stale one from the previous wake, pointing at dead introduction points) is unreachable
    for tens of seconds, and that is worth waiting for; a wedged proxy is not."""
    from nomad.privacy.transport import SILENT

    return SILENT in str(exc)


def _probe(http: httpx.Client, urls: list[str], last_error: str) -> tuple[list[str], str]:
    left = []
    for url in urls:
        try:
            resp = http.get(url.rstrip("/") + "/system_stats")
            if resp.status_code == 200 and isinstance(resp.json(), dict):
                continue
            last_error = f"HTTP {resp.status_code}"
        except httpx.ProxyError as exc:
            if not proxy_is_silent(exc):  # the proxy answered: the server is not reachable *yet*
                last_error = f"the proxy could not reach it yet ({exc})"  # (a new hidden service)
                left.append(url)
                continue
            raise PrivacyError(  # the proxy itself is wedged: no point waiting
                f"health check of {url} through the proxy: {exc}",
                hint="is the anon/tor client running and bootstrapped? check `nomad doctor`",
            ) from exc
        except (httpx.HTTPError, ValueError) as exc:
            last_error = type(exc).__name__
        left.append(url)
    return left, last_error


# -- down / status ---------------------------------------------------------------------


def down(
    backend: Backend,
    data_dir: Path,
    name: str,
    *,
    clock: Callable[[], float] = time.time,
    ledger: ClusterLedger | None = None,
    sleep: Sleep = time.sleep,
) -> ClusterReport:
    """Tear down (idempotent), confirm it is gone, close its ledger row; report time up and spend.

    When the teardown cannot be confirmed the row stays open (the spend clock
    keeps running) and :class:`TeardownUnconfirmed` says so.
    """
    own = ledger is None
    book = ledger or open_ledger(None, data_dir, clock=clock)
    try:
        row = book.find_open(name)
        if row is not None:
            book.mark(row.id, LedgerState.STOPPING, "teardown requested")
            retire(backend, book, row.id, name, "down", sleep=sleep)
            row = book.get(row.id) or row
        else:
            teardown_confirmed(backend, name, sleep=sleep)
        state.remove(data_dir, name)
    finally:
        if own:
            book.close()
    if row is None:
        return ClusterReport(
            ClusterInfo(name=name, backend=backend.name, state=ClusterState.GONE),
            uptime_s=None,
            spend_usd=None,
        )
    report = _report(row_info(row), clock)
    report.info.state = ClusterState.GONE
    return report


def status(
    backend_for: Callable[[str], Backend],
    data_dir: Path,
    name: str | None = None,
    *,
    clock: Callable[[], float] = time.time,
    config: NomadConfig | None = None,
    ledger: ClusterLedger | None = None,
) -> list[ClusterReport]:
    """Every open cluster in the ledger (or ``name``), refreshed from its backend, with spend.

    A cluster the backend no longer knows is closed here (its spend stops at
    this check) and reported once as FAILED (or PREEMPTED for spot).
    """
    own = ledger is None
    book = ledger or open_ledger(config, data_dir, clock=clock)
    try:
        rows = book.open_rows()
        if name is not None:
            rows = [r for r in rows if r.name == name]
            if not rows and state.load(data_dir, name) is None:
                raise ClusterNotFoundError(
                    f"no open cluster named {name!r} in the ledger", hint="see `nomad status`"
                )
        reports = [
            _report(refresh(backend_for(r.backend), book, r, data_dir, clock()), clock)
            for r in rows
        ]
        known = {r.name for r in book.open_rows()} | {r.name for r in rows}
        reports += [
            _legacy(rec, clock)
            for rec in legacy_records(data_dir, known)
            if name in (None, rec.name)
        ]
    finally:
        if own:
            book.close()
    queue = queue_summary(config, data_dir) if config is not None else None
    for r in reports:
        r.queue = queue
    return reports


def legacy_records(data_dir: Path, known: set[str]) -> list[ClusterInfo]:
    """Clusters recorded only in the old per-cluster files (launched before the ledger):
    shown by ``status`` and torn down by ``down``, so an upgrade forgets nothing."""
    return [rec for rec in state.load_all(data_dir) if rec.name not in known]


def _legacy(rec: ClusterInfo, clock: Callable[[], float]) -> ClusterReport:
    rec.detail = "recorded before the cluster ledger: `nomad down NAME` tears it down"
    return _report(rec, clock)


def refresh(
    backend: Backend, book: ClusterLedger, row: LedgerRow, data_dir: Path, now: float
) -> ClusterInfo:
    """Merge the provider's view into the ledger: lost ⇒ ``lost``; confirmed gone ⇒ closed."""
    info = row_info(row)
    try:
        live = backend.status(row.name)
    except NomadError as exc:
        info.detail = f"could not refresh: {exc.message}"
        return info
    if live.state is ClusterState.GONE:
        if in_flight(row, now):  # the backend may not know a launch that is still starting
            info.state = ClusterState.PROVISIONING
            return info
        spot = bool(row.offer and row.offer.spot)
        detail = (
            "lost: spot capacity reclaimed by the provider (the cluster is gone)"
            if spot
            else "lost: the cluster disappeared (stopped by autostop/watchdog or removed outside nomad)"
        )
        if row.state in (LedgerState.STOPPING, LedgerState.FAILED):
            detail = f"gone: {row.detail or row.state.value}"
        book.confirm_gone(row.id, detail)
        state.remove(data_dir, row.name)
        info.state = ClusterState.PREEMPTED if spot else ClusterState.FAILED
        info.detail = detail
        info.extra["ledger_state"] = LedgerState.GONE.value
        return info
    if live.state in (ClusterState.FAILED, ClusterState.PREEMPTED, ClusterState.STOPPED):
        detail = f"lost: {live.detail or live.state.value}"
        if row.state is LedgerState.UP:
            book.mark(row.id, LedgerState.LOST, detail)
            info.extra["ledger_state"] = LedgerState.LOST.value
        state.remove(data_dir, row.name)  # `nomad run` must not send work there
        info.state, info.detail = live.state, live.detail or detail
        return info
    if row.state is LedgerState.UP or live.state is not ClusterState.UP:
        info.state = live.state
    info.endpoints = live.endpoints or info.endpoints
    return info


def row_info(row: LedgerRow) -> ClusterInfo:
    """A ledger row as the ClusterInfo ``status``/``down`` render."""
    shown = {
        LedgerState.LAUNCHING: ClusterState.PROVISIONING,
        LedgerState.UP: ClusterState.UP,
        LedgerState.FAILED: ClusterState.FAILED,
        LedgerState.LOST: ClusterState.FAILED,
        LedgerState.STOPPING: ClusterState.PROVISIONING,
        LedgerState.GONE: ClusterState.GONE,
    }[row.state]
    return ClusterInfo(
        name=row.name,
        backend=row.backend,
        state=shown,
        endpoints=[Endpoint(url=u, gpu_index=i) for i, u in enumerate(row.endpoints)],
        offer=row.offer,
        started_at=row.started_at,
        price_per_hour=row.price_per_hour,
        detail=row.detail,
        extra={
            "ledger_id": row.id,
            "ledger_state": row.state.value,
            "requested_by": row.requested_by,
            "owner": row.owner,
            "ended_at": row.ended_at,
        },
    )


def _report(info: ClusterInfo, clock: Callable[[], float]) -> ClusterReport:
    if info.started_at is None:
        return ClusterReport(info, uptime_s=None, spend_usd=None)
    end = info.extra.get("ended_at") or clock()
    uptime = max(0.0, end - info.started_at)
    spend = info.price_per_hour * math.ceil(uptime / 60.0 - 1e-9) / 60.0
    return ClusterReport(info, uptime_s=uptime, spend_usd=spend)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, NomadError):
        return exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


# -- the admin's /down and /up (any front door) ------------------------------------------

ADMIN_KEY = ("autoscaler", "admin")  # the state document serve's autoscaler reads every tick


def stop_all(
    cfg: NomadConfig,
    data_dir: Path,
    backend_for: Callable[[str], Backend],
    *,
    by: str = "an admin",
    clock: Callable[[], float] = time.time,
) -> list[ClusterReport]:
    """Stop paying now: hold serve's launches, then tear down every open cluster of the
    project, whoever launched it (serve's ``<project>-serve-N`` included). Rows whose
    teardown cannot be confirmed stay open and are reported with that detail."""
    book = open_ledger(cfg, data_dir, clock=clock)
    try:
        book.queue.put_state(
            *ADMIN_KEY,
            {"hold": f"{by} stopped the GPU; /up resumes", "at": clock()},
        )
        reports = []
        for row in book.open_rows():
            try:
                reports.append(
                    down(backend_for(row.backend), data_dir, row.name, clock=clock, ledger=book)
                )
            except TeardownUnconfirmed as exc:
                info = row_info(book.get(row.id) or row)
                info.detail = exc.message
                reports.append(_report(info, clock))
        return reports
    finally:
        book.close()


def resume(
    cfg: NomadConfig,
    data_dir: Path,
    backend_for: Callable[[str], Backend],
    *,
    requested_by: str = "bot",
    clock: Callable[[], float] = time.time,
) -> str:
    """Lift an admin hold and get a GPU: through the running serve (it holds the project's
    lease) so it is serve's cluster, idle clock and all; else launch one directly."""
    from nomad.queue.lease import LeaderLease

    book = open_ledger(cfg, data_dir, clock=clock)
    try:
        held = LeaderLease(book.queue, cfg.project).current()
        serving = held is not None and held.expires_at > clock()
        wake = {"hold": None, "wake_at": clock()} if serving else {"hold": None}
        book.queue.put_state(*ADMIN_KEY, wake)
        if serving:
            return f"nomad serve ({held.describe()}) is waking a GPU"  # type: ignore[union-attr]
        backend = backend_for(cfg.infra.backend)
        spec = spec_from_config(cfg, data_dir, need_image=backend.name != "local")
        health = health_client(cfg)  # through the proxy when privacy is on (no DNS for .onion)
        try:
            report = up(
                backend, spec, data_dir, ledger=book, requested_by=requested_by, clock=clock,
                health_timeout_s=cfg.infra.health_timeout_seconds, health_client=health,
                guard=lambda: check_daily_budget(cfg, data_dir, clock=clock),
            )  # fmt: skip
        finally:
            if health is not None:
                health.close()
        return f"{report.info.name} is {report.info.state.value}"
    finally:
        book.close()


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
