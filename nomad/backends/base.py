"""The launch seam: one ``Backend`` ABC, capability mixins, and the data it speaks.

Implementations live in ``nomad/backends/<name>/`` (skypilot, local, ssh) with
the same file names. Teardown is idempotent: a cluster that is already gone
returns quietly. Vendor errors become :mod:`nomad.errors` BackendError
subclasses at this seam. The autoscaler (``nomad.serve``) and the CLI only
ever talk to this interface; ``nomad.testing.FakeBackend`` implements it for
tests.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any


class ClusterState(str, enum.Enum):  # noqa: UP042 - (str, Enum) keeps JSON/state-file values stable
    """Closed set of states a backend reports for one cluster."""

    PROVISIONING = "provisioning"  # asked for, not yet answering
    UP = "up"  # every endpoint answers /system_stats
    STOPPED = "stopped"
    PREEMPTED = "preempted"  # spot reclaimed by the provider
    FAILED = "failed"
    GONE = "gone"  # no such cluster (torn down or never existed)


@dataclass(frozen=True)
class Offer:
    """One way to run the image: a ranked row of ``nomad plan``."""

    cloud: str
    region: str | None
    instance_type: str | None
    gpu: str
    gpu_count: int
    price_per_hour: float
    spot: bool
    vram_gb: float | None = None
    # filled when benchmark results exist: workflow -> USD per image
    price_per_image: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "cloud": self.cloud,
            "region": self.region,
            "instance_type": self.instance_type,
            "gpu": self.gpu,
            "gpu_count": self.gpu_count,
            "price_per_hour": round(self.price_per_hour, 4),
            "spot": self.spot,
            "vram_gb": self.vram_gb,
            "price_per_image": {k: round(v, 6) for k, v in sorted(self.price_per_image.items())},
        }


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a backend needs to start the image somewhere."""

    cluster_name: str
    image_ref: str  # REGISTRY/REPO@sha256:… (pinned by digest)
    registry_server: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None  # secret: never logged
    gpus: tuple[str, ...] = ()
    ordered: bool = False
    gpu_count: int = 1
    spot: bool = False
    max_price_per_hour: float | None = None
    min_vram_gb: float | None = None
    clouds: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    idle_minutes: float = 10
    disk_gb: int | None = None
    comfy_port: int = 8188
    envs: dict[str, str] = field(default_factory=dict)
    # how offers are ranked (nomad.placement.Placement); None: the backend's $/hour order
    placement: Any = None
    # wide failover: no single offer; SkyPilot tries all of these in one launch (any_of)
    any_of: tuple[Offer, ...] = ()
    wide_failover: bool = False  # infra.wide_failover
    # privacy.node: each ComfyUI published as a hidden service (nomad.privacy.node.NodeHiddenServices);
    # endpoints are then http://<address>.anon, the node opens no port
    hidden: Any = None


@dataclass(frozen=True)
class Endpoint:
    """One ComfyUI server (one per GPU)."""

    url: str  # http://host:port
    gpu_index: int = 0


@dataclass
class ClusterInfo:
    """What a backend knows about one cluster; persisted by ``nomad.backends.state``."""

    name: str
    backend: str
    state: ClusterState
    endpoints: list[Endpoint] = field(default_factory=list)
    offer: Offer | None = None
    started_at: float | None = None  # unix seconds
    price_per_hour: float = 0.0
    detail: str | None = None  # human words on failures / preemption
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """plan / launch / status / teardown, nothing more. Capabilities via mixins."""

    name: str = "base"

    @abc.abstractmethod
    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """Offers ranked cheapest first (or in preference order when ``spec.ordered``)."""

    @abc.abstractmethod
    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Start the cluster and return once it is provisioned (endpoints known).

        Waiting for ComfyUI health is the caller's job (``nomad.launch.wait_healthy``).
        """

    @abc.abstractmethod
    def status(self, cluster_name: str) -> ClusterInfo:
        """Current state; ``ClusterState.GONE`` when it does not exist."""

    @abc.abstractmethod
    def teardown(self, cluster_name: str) -> None:
        """Destroy the cluster. Idempotent: a missing cluster is success."""

    def startup_failure(self, cluster_name: str) -> str | None:
        """While a launched cluster starts: why it can no longer come up (a server process or
        container exited, the provider marked it failed), with the tail of its log; None while it
        still may. ``wait_healthy`` polls this so a dead start fails in seconds, not at the
        health deadline. Backends that cannot tell return None (the default)."""
        return None


class SupportsStop(abc.ABC):
    """Backends whose clusters can be stopped (disk kept) and restarted."""

    @abc.abstractmethod
    def stop(self, cluster_name: str) -> None: ...


class SupportsSpot(abc.ABC):  # noqa: B024 - a capability marker: isinstance() is the API
    """Backends that can launch preemptible capacity."""

    supports_spot: bool = True
