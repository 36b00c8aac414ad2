"""Money decisions as pure functions: expected $ per job, and stop vs down.

Why a module of its own: ``plan``, ``up``, the autoscaler and the simulator
must agree on what "cheapest" means. Ranking offers by $/hour (what plain
``sky launch`` does) picks a 4090 over a 5090 that is 2.7x faster; what the
person paying the bill cares about is dollars per finished job, including the
wake it needed. Nothing here does I/O or reads a clock, so every rule is
checked by hand in the tests.

The model, per offer with ``n`` GPUs (one ComfyUI per GPU, so ``n`` jobs run at
once) at ``p`` $/hour, a job mix whose mean run is ``s`` seconds on that GPU, a
cold start of ``c`` seconds and an idle tail of ``t`` seconds per wake that
serves ``k`` jobs::

    $/job = p/3600 · (s/n + (c + t)/k)

With ``k`` unknown (no history, nothing configured) the wake is left out and
the result is plain $/image — said so in :attr:`Ranked.basis`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

HOUR = 3600.0
MONTH = 30.0 * 86400.0


@dataclass(frozen=True)
class Candidate:
    """One place a cluster could run: a cloud offer, an SSH host or a local box."""

    name: str
    gpu: str
    price_per_hour: float
    gpus: int = 1
    seconds: Mapping[str, float] = field(default_factory=dict)  # workflow -> s/run on one GPU
    source: str = "cloud"  # cloud | ssh | local


@dataclass(frozen=True)
class WakeModel:
    """What one wake costs besides the jobs: cold start and idle tail, and jobs it serves."""

    cold_start_seconds: float = 0.0
    idle_tail_seconds: float = 0.0
    jobs_per_wake: float | None = None  # None: unknown, rank by $/image


@dataclass(frozen=True)
class Ranked:
    """A candidate with its expected cost and the sentence that explains it."""

    candidate: Candidate
    usd_per_job: float | None  # None: no timings for this GPU
    seconds_per_job: float | None
    basis: str

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "name": c.name,
            "gpu": c.gpu,
            "gpus": c.gpus,
            "source": c.source,
            "price_per_hour": c.price_per_hour,
            "usd_per_job": None if self.usd_per_job is None else round(self.usd_per_job, 6),
            "seconds_per_job": self.seconds_per_job,
            "basis": self.basis,
        }


def mix_seconds(seconds: Mapping[str, float], mix: Mapping[str, float]) -> float | None:
    """Mean seconds per job over the workflow ``mix`` (weights), or None if a weighted workflow has no timing."""
    weights = {w: x for w, x in mix.items() if x > 0}
    if not weights:
        return None
    if any(w not in seconds for w in weights):
        return None
    total = sum(weights.values())
    return sum(seconds[w] * x for w, x in weights.items()) / total


def usd_per_job(c: Candidate, run_seconds: float, wake: WakeModel) -> float:
    """Expected $ per job on ``c`` (see the module docstring for the formula)."""
    rate = c.price_per_hour / HOUR
    per_job = run_seconds / max(1, c.gpus)
    if wake.jobs_per_wake:
        per_job += (wake.cold_start_seconds + wake.idle_tail_seconds) / wake.jobs_per_wake
    return rate * per_job


def rank(
    candidates: Iterable[Candidate], mix: Mapping[str, float], wake: WakeModel | None = None
) -> list[Ranked]:
    """Candidates cheapest-per-job first; ones without timings last, by $/hour.

    Ties keep the input order (the backend's own order, e.g. SkyPilot's).
    """
    wake = wake or WakeModel()
    known: list[Ranked] = []
    unknown: list[Ranked] = []
    for c in candidates:
        secs = mix_seconds(c.seconds, mix)
        if secs is None:
            unknown.append(Ranked(c, None, None, f"no benchmark for {c.gpu}: ranked by $/hour"))
            continue
        cost = usd_per_job(c, secs, wake)
        known.append(Ranked(c, cost, secs, _basis(c, secs, wake)))
    known.sort(key=lambda r: r.usd_per_job if r.usd_per_job is not None else 0.0)
    unknown.sort(key=lambda r: r.candidate.price_per_hour)
    return known + unknown


def _basis(c: Candidate, secs: float, wake: WakeModel) -> str:
    gpus = f" ÷ {c.gpus} GPUs" if c.gpus > 1 else ""
    text = f"${c.price_per_hour:.2f}/h × {secs:.2f} s/job{gpus}"
    if wake.jobs_per_wake:
        text += (
            f" + wake ({wake.cold_start_seconds:.0f} s start + {wake.idle_tail_seconds:.0f} s idle)"
            f" ÷ {wake.jobs_per_wake:g} jobs/wake"
        )
    else:
        text += " (no wake history: $/image only)"
    return text


def explain(ranked: Sequence[Ranked]) -> str:
    """One line saying why the first candidate was chosen over the runner-up."""
    if not ranked:
        return "no candidates"
    first = ranked[0]
    if first.usd_per_job is None:
        return f"{first.candidate.name}: cheapest $/hour (no benchmark results)"
    line = f"{first.candidate.name}: ${first.usd_per_job:.6f}/job ({first.basis})"
    if len(ranked) > 1 and ranked[1].usd_per_job is not None:
        line += f"; next {ranked[1].candidate.name} ${ranked[1].usd_per_job:.6f}/job"
    return line


# -- stop vs down ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StopOrDown:
    """The decision and the two costs it compared (USD)."""

    action: str  # "stop" | "down"
    keep_cost: float  # storage of the stopped disk over the expected idle gap
    repull_cost: float  # GPU time paid to pull + load again, plus the users' wait if valued
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "keep_cost": round(self.keep_cost, 6),
            "repull_cost": round(self.repull_cost, 6),
            "reason": self.reason,
        }


def stop_or_down(
    *,
    disk_gb: float,
    storage_usd_per_gb_month: float,
    idle_gap_seconds: float,
    repull_seconds: float,
    price_per_hour: float,
    wait_usd_per_hour: float = 0.0,
    force: str | None = None,
) -> StopOrDown:
    """Keep the disk (stop) when storing it over the gap is cheaper than pulling it again.

    ``repull_seconds`` is the part of a cold start a stopped disk saves (image
    pull + extract, weights fetch); it is paid at the GPU's price while it
    happens, plus ``wait_usd_per_hour`` if users' waiting is given a value.
    At exactly equal costs the answer is ``down``: nothing kept, nothing to forget.
    """
    keep = disk_gb * storage_usd_per_gb_month * max(0.0, idle_gap_seconds) / MONTH
    repull = (price_per_hour + wait_usd_per_hour) * max(0.0, repull_seconds) / HOUR
    if force in ("stop", "down"):
        return StopOrDown(force, keep, repull, f"forced by config (infra.on_idle: {force})")
    if keep < repull - 1e-9 * max(1.0, repull):  # equal within float noise counts as equal
        why = f"keeping {disk_gb:g} GB for {idle_gap_seconds / HOUR:.1f} h costs ${keep:.4f} < re-pull ${repull:.4f}"
        return StopOrDown("stop", keep, repull, why)
    why = f"re-pull ${repull:.4f} ≤ keeping {disk_gb:g} GB for {idle_gap_seconds / HOUR:.1f} h ${keep:.4f}"
    return StopOrDown("down", keep, repull, why)


def expected_idle_gap(
    arrivals: Iterable[float], idle_seconds: float, default_seconds: float
) -> tuple[float, str]:
    """Expected seconds from an idle teardown to the next job, from recent arrival times.

    A cluster is let go after ``idle_seconds`` without work, so only the gaps
    between consecutive arrivals longer than that are cold periods, each
    lasting ``gap - idle_seconds``; their mean is the answer. With no such gap
    in the history (too few jobs, or always busy) ``default_seconds`` is used
    and the second value says so.
    """
    times = sorted(arrivals)
    cold = [b - a - idle_seconds for a, b in pairwise(times) if b - a > idle_seconds]
    if not cold:
        return (
            default_seconds,
            f"no idle gap in {len(times)} recent arrivals: assumed {default_seconds / HOUR:g} h",
        )
    mean = sum(cold) / len(cold)
    return mean, f"mean of {len(cold)} idle gap(s) in {len(times)} recent arrivals"


@dataclass(frozen=True)
class IdleRule:
    """``infra.on_idle`` and what stop-vs-down needs that is not in the cluster itself."""

    on_idle: str = "auto"  # auto | stop | down
    storage_usd_per_gb_month: float = 0.10
    default_gap_seconds: float = 12 * HOUR
    wait_usd_per_hour: float = 0.0
    repull_seconds: float | None = None  # None: the recorded median cold start
    idle_seconds: float = 600.0

    def decide(
        self,
        *,
        can_stop: bool,
        disk_gb: float | None,
        price_per_hour: float,
        arrivals: Sequence[float],
        recorded_cold_start_s: float | None,
    ) -> StopOrDown:
        """Stop or down for one idle cluster, with the reason (every input named in it)."""
        if not can_stop:
            return StopOrDown("down", 0.0, 0.0, "the backend cannot stop this cluster")
        if self.on_idle == "down":
            return StopOrDown("down", 0.0, 0.0, "forced by config (infra.on_idle: down)")
        repull = self.repull_seconds if self.repull_seconds is not None else recorded_cold_start_s
        if self.on_idle == "auto" and (repull is None or not disk_gb):
            missing = "no cold start recorded yet" if repull is None else "disk size unknown"
            return StopOrDown("down", 0.0, 0.0, f"{missing}: nothing to weigh, so down")
        gap, gap_why = expected_idle_gap(arrivals, self.idle_seconds, self.default_gap_seconds)
        d = stop_or_down(
            disk_gb=float(disk_gb or 0.0),
            storage_usd_per_gb_month=self.storage_usd_per_gb_month,
            idle_gap_seconds=gap,
            repull_seconds=float(repull or 0.0),
            price_per_hour=price_per_hour,
            wait_usd_per_hour=self.wait_usd_per_hour,
            force=self.on_idle if self.on_idle in ("stop", "down") else None,
        )
        src = "configured" if self.repull_seconds is not None else "median recorded cold start"
        return StopOrDown(
            d.action,
            d.keep_cost,
            d.repull_cost,
            f"{d.reason} (gap: {gap_why}; re-pull {repull:.0f} s, {src})",
        )

    @classmethod
    def from_config(cls, cfg: Any) -> IdleRule:
        """From ``infra.on_idle`` and ``infra.stopped_disk``."""
        sd = cfg.infra.stopped_disk
        return cls(
            on_idle=cfg.infra.on_idle,
            storage_usd_per_gb_month=sd.usd_per_gb_month,
            default_gap_seconds=sd.idle_gap_hours * HOUR,
            wait_usd_per_hour=sd.wait_usd_per_hour,
            repull_seconds=sd.repull_seconds,
            idle_seconds=float(cfg.infra.idle_minutes) * 60.0,
        )


STOPPED = "idle: stopped, disk kept"  # the ledger detail of a cluster stopped when idle


def restart_first(offers: Sequence[Any], last: Any) -> list[Any]:
    """After an idle stop (``last``: the cluster's last ledger row), its own offer first:
    launching the same name there restarts the kept disk; another offer would not match
    the stopped cluster."""
    if last is None or last.offer is None or not (last.detail or "").startswith(STOPPED):
        return list(offers)

    def key(o: Any) -> tuple[Any, ...]:
        return (o.cloud, o.region, o.instance_type, o.gpu, o.gpu_count, o.spot)

    same = [o for o in offers if key(o) == key(last.offer)]
    return same + [o for o in offers if key(o) != key(last.offer)]


# -- offers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """What ranking by $/job needs: benchmark results, the job mix, the wake model."""

    results: tuple[Any, ...]  # nomad.bench.BenchResult
    mix: Mapping[str, float]
    wake: WakeModel = WakeModel()

    def seconds(self, gpu: str) -> dict[str, float]:
        """Mean seconds per run of each workflow on ``gpu`` (measured results win over published)."""
        return seconds_per_run(self.results, gpu)


def seconds_per_run(results: Sequence[Any], gpu: str) -> dict[str, float]:
    """Mean seconds per run of each workflow on ``gpu`` from benchmark results (``{}`` if none)."""
    from nomad.bench import price_per_image

    # At $3600/h a dollar is one second: price_per_image's own matching (GPU names,
    # measured over published) gives the mean seconds per run.
    return price_per_image(results, gpu, HOUR)


def order_offers(offers: Sequence[Any], placement: Placement | None) -> tuple[list[Any], str]:
    """Offers (``nomad.backends.base.Offer``) cheapest per job first, each with $/image filled in.

    Returns the offers and one sentence saying why the first was chosen. With no
    placement (no benchmark results, or ``rank_by: hour``) the order is kept.
    """
    from dataclasses import replace

    if placement is None or not offers:
        return list(offers), "ranked by $/hour (no benchmark results configured)"
    candidates = []
    for i, o in enumerate(offers):
        secs = placement.seconds(o.gpu)
        candidates.append(Candidate(str(i), o.gpu, o.price_per_hour, max(1, o.gpu_count), secs))
    ranked = rank(candidates, placement.mix, placement.wake)
    out = []
    for r in ranked:
        o = offers[int(r.candidate.name)]
        per = {
            wf: round(o.price_per_hour * s / HOUR / max(1, o.gpu_count), 6)
            for wf, s in r.candidate.seconds.items()
        }
        out.append(replace(o, price_per_image=per or dict(o.price_per_image)))
    first = ranked[0]
    if first.usd_per_job is None:
        return out, "ranked by $/hour (no benchmark covers these GPUs)"
    o = out[0]
    why = f"{o.gpu}×{o.gpu_count} ${o.price_per_hour:.2f}/h: ${first.usd_per_job:.6f}/job ({first.basis})"
    second = next((r for r in ranked[1:] if r.usd_per_job is not None), None)
    if second is not None:
        o2 = offers[int(second.candidate.name)]
        why += f"; next {o2.gpu} ${o2.price_per_hour:.2f}/h at ${second.usd_per_job:.6f}/job"
    return out, why


def from_config(cfg: Any, results: Sequence[Any] | None = None) -> Placement | None:
    """The deployment's Placement from ``infra.placement`` (None: rank by $/hour)."""
    pc = cfg.infra.placement
    if pc.rank_by == "hour":
        return None
    if results is None:
        if not pc.bench:
            return None
        from nomad.bench import load_results

        results = load_results(pc.bench)
    if not results:
        return None
    mix = dict(pc.mix) or {w: 1.0 for w in cfg.workflows.enabled} or _all_workflows(results)
    wake = WakeModel(
        cold_start_seconds=pc.cold_start_seconds,
        idle_tail_seconds=float(cfg.infra.idle_minutes) * 60.0,
        jobs_per_wake=pc.jobs_per_wake,
    )
    return Placement(tuple(results), mix, wake)


def _all_workflows(results: Sequence[Any]) -> dict[str, float]:
    names: set[str] = set()
    for r in results:
        names.update(r.workflows)
    return {n: 1.0 for n in sorted(names)}
