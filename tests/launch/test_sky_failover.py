"""SkyPilot errors matched by SkyPilot's own exception hierarchy, and spend recorded at the launch's price.

Real: SkyPilot's exception classes and its ``Resources.get_cost`` on the pinned catalog. Double:
the SDK stub of test_ssh_and_sky_backend (no cloud is called).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from nomad.backends.base import Offer
from nomad.backends.skypilot.backend import SkyPilotBackend
from nomad.backends.skypilot.errors import translate
from nomad.errors import (
    BackendError,
    ClusterNotFoundError,
    NoCapacityError,
    NoCloudAccessError,
    QuotaError,
)
from tests.launch.conftest import make_spec
from tests.launch.test_ssh_and_sky_backend import SkySdkStub


def test_a_resources_unavailable_subclass_is_no_capacity(sky_offline: Any) -> None:
    """KubeAPIUnreachableError (a ResourcesUnavailableError) means "try the next offer", not a generic failure."""
    from sky import exceptions

    err = translate(exceptions.KubeAPIUnreachableError("kube API unreachable"), cluster="c")
    assert type(err) is NoCapacityError and "KubeAPIUnreachableError" in err.message

    class FutureSkyError(exceptions.ResourcesUnavailableError):
        """A subclass SkyPilot may add later: still no capacity."""

    assert type(translate(FutureSkyError("gone"))) is NoCapacityError
    quota = FutureSkyError("x", failover_history=[RuntimeError("QUOTA_EXCEEDED")])
    assert type(translate(quota)) is QuotaError

    class ClusterGone(exceptions.ClusterDoesNotExist):
        pass

    assert type(translate(ClusterGone("no such cluster"))) is ClusterNotFoundError
    assert type(translate(exceptions.NoCloudAccessError("none"))) is NoCloudAccessError


def test_names_alone_no_longer_match(sky_offline: Any) -> None:
    """An exception that only shares SkyPilot's class name is a plain backend error."""

    class ResourcesUnavailableError(Exception):  # the point is the name
        pass

    err = translate(ResourcesUnavailableError("not SkyPilot's"))
    assert type(err) is BackendError


def test_teardown_of_a_missing_cluster_matches_by_hierarchy(sky_offline: Any) -> None:
    """A ClusterDoesNotExist subclass from `sky down` is still "already gone" (idempotent teardown)."""
    from sky import exceptions

    class Vanished(exceptions.ClusterDoesNotExist):
        pass

    sdk = SkySdkStub(raise_on={"down": Vanished("Cluster 'c' does not exist.")})
    SkyPilotBackend(sdk=sdk).teardown("c")  # no error


class PricedSdk(SkySdkStub):
    """The stub, with status records carrying a handle whose launched resources are real SkyPilot Resources."""

    def __init__(self, resources: Any, nodes: int = 1) -> None:
        super().__init__()
        self.handle = SimpleNamespace(launched_resources=resources, launched_nodes=nodes)

    def status(self, cluster_names: list[str]) -> Any:
        return [{**r, "handle": self.handle} for r in super().status(cluster_names)]


def test_spend_is_recorded_at_the_launched_resources_price_not_the_plans(sky_offline: Any) -> None:
    """Planned at $0.30/h (an older snapshot), launched L4 on RunPod: SkyPilot prices it $0.43/h and that is recorded."""
    sky = sky_offline
    res = sky.Resources(infra="runpod/US", instance_type="1x_L4_SECURE", accelerators={"L4": 1})
    backend = SkyPilotBackend(sdk=PricedSdk(res))
    stale = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.30, False, 24.0)
    info = backend.launch(make_spec(), stale)
    assert info.price_per_hour == pytest.approx(0.43)
    assert info.extra["planned_price_per_hour"] == 0.30 and "launched at $0.4300/h" in (info.detail or "")
    same = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
    info = SkyPilotBackend(sdk=PricedSdk(res)).launch(make_spec(), same)
    assert info.price_per_hour == pytest.approx(0.43) and "planned_price_per_hour" not in info.extra


def test_without_a_handle_the_offer_price_stands(sky_offline: Any) -> None:
    """A status record without a handle (older API server): the offer's price is recorded."""
    offer = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
    info = SkyPilotBackend(sdk=SkySdkStub()).launch(make_spec(), offer)
    assert info.price_per_hour == 0.43 and info.detail is None
