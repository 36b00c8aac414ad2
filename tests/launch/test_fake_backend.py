"""FakeBackend: the launch-seam double the autoscaler and CLI tests rely on."""

from __future__ import annotations

import pytest

from nomad.backends.base import ClusterState, LaunchSpec
from nomad.errors import NoCapacityError
from nomad.testing.backend import FakeBackend


def _spec(name: str = "c1") -> LaunchSpec:
    return LaunchSpec(cluster_name=name, image_ref="reg/repo@sha256:" + "0" * 64)


def test_launch_records_calls_and_returns_up() -> None:
    """launch returns an UP cluster with the configured endpoints and records the call."""
    fake = FakeBackend(endpoints=["http://127.0.0.1:9"], price_per_hour=2.5, gpu="L4")
    info = fake.launch(_spec())
    assert info.state == ClusterState.UP
    assert [e.url for e in info.endpoints] == ["http://127.0.0.1:9"]
    assert info.price_per_hour == 2.5 and info.offer is not None and info.offer.gpu == "L4"
    assert fake.calls == [("launch", "c1")]


def test_scripted_failures_then_success() -> None:
    """Scripted outcomes are consumed per launch, before fail_launch applies."""
    fake = FakeBackend(fail_launch=RuntimeError("always"))
    fake.script_launches([NoCapacityError("none"), None])
    with pytest.raises(NoCapacityError):
        fake.launch(_spec())
    assert fake.launch(_spec()).state == ClusterState.UP
    with pytest.raises(RuntimeError):
        fake.launch(_spec())


def test_set_state_simulates_preemption_and_teardown_is_idempotent() -> None:
    """set_state changes what status reports; teardown twice is fine and leaves GONE."""
    fake = FakeBackend()
    fake.launch(_spec())
    fake.set_state("c1", ClusterState.PREEMPTED)
    st = fake.status("c1")
    assert st.state == ClusterState.PREEMPTED and st.detail
    fake.teardown("c1")
    fake.teardown("c1")
    assert fake.status("c1").state == ClusterState.GONE
    assert fake.calls.count(("teardown", "c1")) == 2
