"""``SkyDouble``: stands in for SkyPilot's client SDK and fails the way SkyPilot fails.

It keeps a table of clusters like the API server does and, per launch, fails
at a scripted stage with SkyPilot's **own** exception classes (imported from
``sky.exceptions`` of the installed library):

- ``provision``: ``ResourcesUnavailableError`` (SkyPilot cleaned up: nothing left);
- ``setup``: ``ClusterSetUpError`` after the node was provisioned (left in INIT);
- ``docker_pull``: ``CommandError`` from the node's ``docker pull`` (left in INIT);
- ``health``: the launch succeeds, but the endpoint never answers.
- ``run_fails``: the launch succeeds, the endpoint never answers and the run script's job
  (id 1) is FAILED in ``job_status`` (fetched mode: ``nomad node pull`` exited 1).

Like the real SkyPilot (``sky/execution.py``: autostop is set at PRE_EXEC,
after setup), autostop is armed only for launches that got past setup. It is
a double, named honestly: no cloud, no API server.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nomad.backends.base import LaunchSpec, Offer
from nomad.backends.local.process import free_port
from nomad.backends.skypilot.backend import SkyPilotBackend

STAGES = ("provision", "setup", "docker_pull", "health", "run_fails")


@dataclass
class SkyCluster:
    status: str  # UP | INIT | STOPPED
    autostop_minutes: int | None = None
    down: bool = False
    port_url: str = ""
    job: str = "RUNNING"  # the run script's job (id 1): a sky.skylet.job_lib.JobStatus value


@dataclass
class SkyDouble:
    """The slice of ``sky`` (client SDK) that SkyPilotBackend calls."""

    endpoint_url: str = ""
    clusters: dict[str, SkyCluster] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    down_failures: int = 0  # the next N downs fail (API server unreachable)
    _plan: deque[str | None] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, stages: Iterable[str | None]) -> None:
        """Per-launch outcomes: a stage name from STAGES to fail at, or None to succeed."""
        for s in stages:
            assert s is None or s in STAGES, s
            self._plan.append(s)

    # -- the SDK calls -------------------------------------------------------------

    def launch(self, task: Any, cluster_name: str, **kw: Any) -> Any:
        self.calls.append(("launch", cluster_name))
        return ("launch", cluster_name, kw)

    def stream_and_get(self, request: Any) -> Any:
        from sky import exceptions

        _, name, kw = request
        stage = self._plan.popleft() if self._plan else None
        if stage == "provision":
            raise exceptions.ResourcesUnavailableError(
                "Failed to provision all possible launchable resources.", failover_history=[]
            )
        with self._lock:
            self.clusters[name] = SkyCluster("INIT")
        if stage == "setup":
            raise exceptions.ClusterSetUpError(f"Failed to set up cluster {name!r}: setup failed.")
        if stage == "docker_pull":
            raise exceptions.CommandError(
                1,
                "docker pull registry.example.com/nomad/comfy@sha256:…",
                "Failed to run docker setup commands.",
                "Error response from daemon: pull access denied, repository does not exist",
            )
        dead = stage in ("health", "run_fails")
        url = f"127.0.0.1:{free_port()}" if dead else self.endpoint_url
        with self._lock:  # PRE_EXEC: only now does SkyPilot arm autostop
            self.clusters[name] = SkyCluster(
                "UP", kw.get("idle_minutes_to_autostop"), bool(kw.get("down")), url,
                "FAILED" if stage == "run_fails" else "RUNNING",
            )  # fmt: skip
        return (1, None)

    def get(self, request: Any) -> Any:
        return request

    def status(self, cluster_names: list[str], **kw: Any) -> Any:
        with self._lock:
            return [
                {"name": n, "status": self.clusters[n].status}
                for n in cluster_names
                if n in self.clusters
            ]

    def job_status(self, cluster_name: str, job_ids: list[int] | None = None) -> Any:
        """Like ``sky.job_status``: {job id: JobStatus}; a cluster it lacks raises as SkyPilot does."""
        from sky.skylet.job_lib import JobStatus

        from sky import exceptions

        with self._lock:
            c = self.clusters.get(cluster_name)
        if c is None:
            raise exceptions.ClusterDoesNotExist(f"Cluster {cluster_name!r} does not exist.")
        return {j: (JobStatus(c.job) if j == 1 else None) for j in job_ids or [1]}

    def down(self, name: str) -> Any:
        from sky import exceptions

        self.calls.append(("down", name))
        if self.down_failures > 0:
            self.down_failures -= 1
            raise exceptions.ApiServerConnectionError("http://127.0.0.1:46580")
        with self._lock:
            if name not in self.clusters:
                raise exceptions.ClusterDoesNotExist(f"Cluster {name!r} does not exist.")
            del self.clusters[name]
        return None

    def stop(self, name: str) -> Any:
        return None

    def endpoints(self, cluster: str, port: int) -> Any:
        with self._lock:
            c = self.clusters.get(cluster)
        return {port: c.port_url} if c else {}

    # -- what the tests look at -----------------------------------------------------

    def running(self) -> set[str]:
        """Clusters that exist (and would bill)."""
        with self._lock:
            return set(self.clusters)

    def left_to_bill(self) -> set[str]:
        """Clusters that exist with no autostop armed: nothing on the node will ever stop them."""
        with self._lock:
            return {n for n, c in self.clusters.items() if not (c.autostop_minutes and c.down)}


class PlannedSky(SkyPilotBackend):
    """SkyPilotBackend with fixed offers (planning is not under test here; launch is)."""

    def __init__(self, sdk: SkyDouble, offers: list[Offer]) -> None:
        super().__init__(sdk=sdk)
        self.offers = offers

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        return list(self.offers)
