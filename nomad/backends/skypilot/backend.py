"""``SkyPilotBackend``: the multi-cloud engine behind ``nomad up`` (the only user of ``sky``).

``sdk`` is SkyPilot's client module (``import sky``) by default; tests inject a
stub with the same five calls (launch, status, down, stop, endpoints + get /
stream_and_get) to prove error translation without a cloud. Every SkyPilot
exception leaves this module as a :mod:`nomad.errors` class.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

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
from nomad.backends.skypilot import planner
from nomad.backends.skypilot._import import import_sky
from nomad.backends.skypilot.errors import is_sky, translate
from nomad.backends.skypilot.task import build_task_config, to_sky_task
from nomad.errors import NomadError
from nomad.watchdog import DEFAULT_MARGIN_MINUTES, node_window_minutes

_STATES = {
    "UP": ClusterState.UP,
    "INIT": ClusterState.PROVISIONING,
    "STOPPED": ClusterState.STOPPED,
}

# SkyPilot job states (sky.skylet.job_lib.JobStatus) after which the run script no longer runs
_JOB_ENDED = frozenset({"SUCCEEDED", "FAILED", "FAILED_SETUP", "FAILED_DRIVER", "CANCELLED"})


class SkyPilotBackend(Backend, SupportsStop, SupportsSpot):
    """Plans with SkyPilot's catalogs/optimizer; launches, inspects and downs through its SDK."""

    name = "skypilot"

    def __init__(
        self,
        *,
        catalog_dir: str | None = None,
        sdk: Any = None,
        idle_margin_minutes: float = DEFAULT_MARGIN_MINUTES,
    ) -> None:
        self.catalog_dir = catalog_dir
        self._sdk = sdk
        self.idle_margin_minutes = idle_margin_minutes
        self.last_plan: planner.PlanResult | None = None
        self._jobs: dict[str, int] = {}  # cluster -> SkyPilot job id of the run script it launched
        self._hidden: dict[str, Any] = {}  # cluster -> privacy.node plan it was launched with

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            self._sdk = import_sky()
        return self._sdk

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """Ranked offers from the (pinned or live) catalog; see :mod:`.planner`."""
        self.last_plan = planner.plan(spec, self.catalog_dir)
        return self.last_plan.offers

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Validate the task with SkyPilot, launch it, and return its endpoints.

        The node's switches (the watchdog in the task, SkyPilot's autostop with
        ``down=True``) get the node window, longer than serve's idle window by
        the margin. SkyPilot arms autostop at its PRE_EXEC stage, after setup,
        and ``sky autostop`` refuses a cluster that is not UP; a launch that
        fails before that is torn down by nomad (:func:`nomad.launch.launch_recorded`).
        """
        window = node_window_minutes(spec.idle_minutes, self.idle_margin_minutes)
        spec = replace(spec, idle_minutes=window)
        if spec.hidden is not None:  # take a gone cluster's key slot: the same address
            spec.hidden.keys(spec.cluster_name, max(spec.gpu_count, 1), in_use=self._exists)
            self._hidden[spec.cluster_name] = spec.hidden
        task = to_sky_task(build_task_config(spec, offer=offer))
        idle = max(1, math.ceil(window))
        try:
            request = self.sdk.launch(
                task, cluster_name=spec.cluster_name, idle_minutes_to_autostop=idle, down=True
            )
            launched_job = self.sdk.stream_and_get(request)  # (job id, handle)
        except Exception as exc:
            raise translate(exc, cluster=spec.cluster_name) from exc
        job_id = launched_job[0] if isinstance(launched_job, tuple) and launched_job else None
        if isinstance(job_id, int):
            self._jobs[spec.cluster_name] = job_id
        info = self.status(spec.cluster_name)
        info.offer = offer
        launched = info.price_per_hour  # SkyPilot's price of what it launched (its live catalog)
        if offer is not None and launched and abs(launched - offer.price_per_hour) > 1e-6:
            # the plan's catalog (e.g. a pinned snapshot) is not what bills: record the launch's
            info.extra["planned_price_per_hour"] = offer.price_per_hour
            info.detail = (
                f"planned at ${offer.price_per_hour:.4f}/h, launched at ${launched:.4f}/h "
                "(SkyPilot's catalog price of the launched resources: recorded)"
            )
        info.price_per_hour = launched or (offer.price_per_hour if offer else 0.0)
        if offer is None and spec.any_of:  # wide failover: which of them SkyPilot chose
            info.offer = _chosen(spec.any_of, info)
            # no launched price known: the dearest candidate (recorded spend never too low)
            info.price_per_hour = launched or max(o.price_per_hour for o in spec.any_of)
        info.started_at = info.started_at or time.time()
        info.endpoints = self._endpoints(spec)
        return info

    def status(self, cluster_name: str) -> ClusterInfo:
        """SkyPilot's record of the cluster; GONE when it has none."""
        try:
            mode = getattr(getattr(self.sdk, "StatusRefreshMode", None), "AUTO", None)
            extra = {"refresh": mode} if mode is not None else {}  # AUTO: autostop/spot clusters
            records = self.sdk.get(self.sdk.status(cluster_names=[cluster_name], **extra))
        except Exception as exc:
            raise translate(exc, cluster=cluster_name) from exc
        for rec in records or []:
            if _field(rec, "name") == cluster_name:
                return _to_info(cluster_name, rec)
        return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)

    def startup_failure(self, cluster_name: str) -> str | None:
        """SkyPilot's verdict while ComfyUI starts: a cluster it marks failed (node lost,
        runtime broken), one it no longer has or that stopped (spot preempted), or the run
        script's job already ended (fetched mode exits 1 when the weights pull or the container
        start fails) cannot come up. A status call that fails says nothing (the wake goes on).
        A baked-mode ComfyUI dying inside a job that keeps running (the watchdog waits on) is
        left to the health deadline."""
        try:
            info = self.status(cluster_name)
        except NomadError:
            return None
        if info.state is ClusterState.FAILED:
            return f"SkyPilot marks {cluster_name} failed: {info.detail or 'no reason given'}"
        if info.state is ClusterState.GONE:
            return f"{cluster_name} vanished from SkyPilot while starting (preempted or removed)"
        if info.state is ClusterState.STOPPED:
            return f"SkyPilot reports {cluster_name} STOPPED while starting (spot preempted?)"
        job = self._jobs.get(cluster_name)
        if info.state is not ClusterState.UP or job is None:
            return None
        try:
            found = self.sdk.get(self.sdk.job_status(cluster_name, job_ids=[job]))
        except Exception:  # not up yet, API server busy: no verdict
            return None
        raw = found.get(job) if isinstance(found, dict) else None
        status = str(getattr(raw, "value", raw) or "")
        if status in _JOB_ENDED:
            return (
                f"the node's run script (SkyPilot job {job} on {cluster_name}) ended {status} "
                f"while ComfyUI was starting; its log: `sky logs {cluster_name} {job}`"
            )
        return None

    def teardown(self, cluster_name: str) -> None:
        """``sky down``; a cluster SkyPilot does not know is already torn down."""
        self._jobs.pop(cluster_name, None)
        try:
            self.sdk.get(self.sdk.down(cluster_name))
        except Exception as exc:
            if not is_sky(exc, "ClusterDoesNotExist"):
                raise translate(exc, cluster=cluster_name) from exc
        hidden = self._hidden.pop(cluster_name, None)
        if hidden is not None:  # launched by this process: its slot goes to the next wake now
            hidden.release(cluster_name)

    def _exists(self, cluster_name: str) -> bool:
        """Whether SkyPilot still has the cluster (unknown counts as yes: keep its address)."""
        try:
            return self.status(cluster_name).state is not ClusterState.GONE
        except NomadError:
            return True

    def stop(self, cluster_name: str) -> None:
        """``sky stop`` (disk kept); not every cloud can stop (Lambda, RunPod: down only)."""
        try:
            self.sdk.get(self.sdk.stop(cluster_name))
        except Exception as exc:
            raise translate(exc, cluster=cluster_name) from exc

    def _endpoints(self, spec: LaunchSpec) -> list[Endpoint]:
        """One URL per GPU port, as SkyPilot exposes it (handles RunPod/Vast proxies); with
        privacy.node, the hidden services' addresses (known before the node answers)."""
        if spec.hidden is not None:
            urls = spec.hidden.urls(spec.cluster_name, max(spec.gpu_count, 1))
            return [Endpoint(url=u, gpu_index=i) for i, u in enumerate(urls)]
        out = []
        for i in range(max(spec.gpu_count, 1)):
            port = spec.comfy_port + i
            try:
                found = self.sdk.get(self.sdk.endpoints(spec.cluster_name, port))
            except Exception as exc:
                raise translate(exc, cluster=spec.cluster_name) from exc
            url = str(found.get(port) or found.get(str(port)) or "")
            if url:
                out.append(Endpoint(url=url if "://" in url else f"http://{url}", gpu_index=i))
        return out


def _field(rec: Any, key: str) -> Any:
    return rec.get(key) if isinstance(rec, dict) else getattr(rec, key, None)


def _to_info(name: str, rec: Any) -> ClusterInfo:
    raw = _field(rec, "status")
    status = str(getattr(raw, "value", raw) or "").upper()
    launched = _field(rec, "launched_at")
    state = _STATES.get(status, ClusterState.FAILED)
    detail = None if status in _STATES else f"SkyPilot reports status {status or 'unknown'}"
    if status == "INIT" and _field(rec, "init_kind") == "unhealthy":  # node lost / runtime broken
        state = ClusterState.FAILED
        detail = str(_field(rec, "init_status_reason") or "SkyPilot marks the cluster unhealthy")
    return ClusterInfo(
        name=name,
        backend="skypilot",
        state=state,
        started_at=float(launched) if launched else None,
        price_per_hour=launched_price(rec) or 0.0,
        detail=detail,
        extra={
            "sky_status": status,
            "cloud": str(_field(rec, "cloud") or ""),
            "region": _field(rec, "region"),
        },
    )


def launched_price(rec: Any) -> float | None:
    """$/hour of what SkyPilot actually launched: its launched resources priced by its own
    catalog (what ``sky status``/``sky cost-report`` use), times the nodes; None when the
    record carries no handle (or the catalog cannot price it)."""
    handle = _field(rec, "handle")
    resources = getattr(handle, "launched_resources", None)
    if resources is None:
        return None
    try:
        nodes = int(getattr(handle, "launched_nodes", 1) or 1)
        return float(resources.get_cost(3600)) * nodes
    except Exception:  # a catalog without the row: fall back to the offer's price
        return None


def _chosen(candidates: tuple[Offer, ...], info: ClusterInfo) -> Offer | None:
    """The any-of candidate matching the cloud/region SkyPilot reports (the dearest if several)."""
    cloud = str(info.extra.get("cloud") or "").lower()
    region = info.extra.get("region")
    same = [
        o for o in candidates
        if o.cloud.lower() == cloud and (region is None or o.region in (None, region))
    ]  # fmt: skip
    return max(same, key=lambda o: o.price_per_hour) if same else None
