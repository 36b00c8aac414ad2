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
    assert info.extra["planned_price_per_hour"] == 0.30 and "launched at $0.4300/h" in (
        info.detail or ""
    )
    same = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
    info = SkyPilotBackend(sdk=PricedSdk(res)).launch(make_spec(), same)
    assert info.price_per_hour == pytest.approx(0.43) and "planned_price_per_hour" not in info.extra


def test_without_a_handle_the_offer_price_stands(sky_offline: Any) -> None:
    """A status record without a handle (older API server): the offer's price is recorded."""
    offer = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
    info = SkyPilotBackend(sdk=SkySdkStub()).launch(make_spec(), offer)
    assert info.price_per_hour == 0.43 and info.detail is None


# -- wide failover: one SkyPilot any-of launch after nomad's ranked attempts ------------------

RANKED = [  # what the planner would rank (pinned catalog rows), cheapest first
    Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0),
    Offer("runpod", "CA", "1x_L4_SECURE", "L4", 1, 0.45, False, 24.0),
    Offer("runpod", "US", "1x_RTX4090_SECURE", "RTX4090", 1, 0.69, False, 24.0),
    Offer("runpod", "US", "1x_L40S_SECURE", "L40S", 1, 0.86, False, 48.0),
    Offer("runpod", "US", "2x_RTX4090_SECURE", "RTX4090", 2, 1.38, False, 24.0),
]


class ScriptedSky(SkySdkStub):
    """Launch fails with SkyPilot's own errors for the first ``fail`` calls; records each task."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail, self.tasks = fail, []  # type: list[Any]

    def launch(self, task: Any, cluster_name: str, **kw: Any) -> Any:
        from sky import exceptions

        self.tasks.append(task)
        if len(self.tasks) <= self.fail:
            raise exceptions.KubeAPIUnreachableError("no capacity here")
        return super().launch(task, cluster_name, **kw)


class PlannedSky(SkyPilotBackend):
    """The real SkyPilotBackend with the planner's answer given (the planner has its own tests)."""

    def plan(self, spec: Any) -> list[Offer]:
        return list(RANKED)


def _ops(sdk: ScriptedSky, **spec: Any) -> Any:
    from nomad.serve.autoscaler import BackendOps

    return BackendOps(PlannedSky(sdk=sdk), make_spec(**spec), None, health_timeout_s=None,
                      sleep=lambda _s: None)  # fmt: skip


def test_any_of_task_pins_every_offer_and_passes_skypilot_validation(sky_offline: Any) -> None:
    """The wide launch's task lists each remaining offer as an any_of entry SkyPilot accepts."""
    from nomad.backends.skypilot.task import build_task_config, to_sky_task

    config = build_task_config(make_spec(any_of=tuple(RANKED[3:])))
    entries = config["resources"]["any_of"]
    assert [(e["infra"], e["instance_type"]) for e in entries] == [
        ("runpod/US", "1x_L40S_SECURE"), ("runpod/US", "2x_RTX4090_SECURE"),
    ]  # fmt: skip
    task = to_sky_task(config)
    assert sorted(r.instance_type for r in task.resources) == [
        "1x_L40S_SECURE",
        "2x_RTX4090_SECURE",
    ]


def test_after_three_ranked_failures_skypilot_tries_the_rest_within_the_cap(
    sky_offline: Any,
) -> None:
    """wide_failover: the 4th launch is one any-of over the untried offers under the $1.00 cap; spend at the dearest (no launched price known)."""
    sdk = ScriptedSky(fail=3)
    info = _ops(sdk, wide_failover=True, max_price_per_hour=1.00).up("nomad-test").info
    assert len(sdk.tasks) == 4
    (only,) = list(sdk.tasks[-1].resources)  # the 2x4090 at $1.38 is above the cap: left out
    assert only.instance_type == "1x_L40S_SECURE"
    assert info.price_per_hour == 0.86


def test_without_wide_failover_three_failures_are_the_end(sky_offline: Any) -> None:
    """Default: nomad's three ranked attempts, then the error (no unpinned launch)."""
    sdk = ScriptedSky(fail=3)
    with pytest.raises(NoCapacityError):
        _ops(sdk).up("nomad-test")
    assert len(sdk.tasks) == 3


def test_nomad_up_falls_back_to_the_wide_launch_and_records_it(
    sky_offline: Any, tmp_path: Any
) -> None:
    """`nomad up`'s path (launch.up): three ranked failures, then the any-of launch; the ledger row is the wide one, closed tries before it."""
    import httpx

    from nomad import launch
    from nomad.queue.ledger import open_ledger

    stats = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"system": {}}))
    )
    sdk = ScriptedSky(fail=3)
    book = open_ledger(None, tmp_path)
    try:
        report = launch.up(
            PlannedSky(sdk=sdk), make_spec(wide_failover=True), tmp_path, health_timeout_s=5,
            health_client=stats, ledger=book, sleep=lambda _s: None,
        )  # fmt: skip
        assert len(report.attempts) == 3 and len(sdk.tasks) == 4
        assert len(list(sdk.tasks[-1].resources)) == 2  # the two offers not tried
        row = book.find_open("nomad-test")
        assert row is not None and row.offer is None and row.price_per_hour == 1.38
    finally:
        book.close()
        stats.close()
