"""The ways a paid GPU used to leak, each driven through the real launch/autoscaler code.

SkyPilot is the real library for task validation and its own exception
classes; the SDK calls go to ``SkyDouble`` (tests/launch/sky_double.py), which
fails at provision, setup, docker pull or health like SkyPilot does. After
every scenario: each cluster that exists has an open ledger row, and nothing
is left that no clock will ever stop.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad import launch
from nomad.backends.base import LaunchSpec, Offer
from nomad.config.schema import NomadConfig
from nomad.errors import NoCapacityError
from nomad.queue._sql import SqlQueue
from nomad.queue.ledger import ClusterLedger, LedgerState, open_ledger
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.policy import Policy, PolicyConfig
from nomad.testing.comfy import FakeComfy
from tests.launch.conftest import make_spec
from tests.launch.sky_double import PlannedSky, SkyDouble

A = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
B = Offer("vast", "Texas", "1x-4090", "RTX4090", 1, 0.50, False, 24.0)
C = Offer("lambda", "us-east-1", "gpu_1x_a10", "A10", 1, 0.75, False, 24.0)
NAME = "nomad-test"
no_sleep = lambda _s: None  # noqa: E731 - teardown backoff is not under test


@pytest.fixture(scope="module")
def comfy() -> Iterator[FakeComfy]:
    """A ComfyUI protocol double the successful launches point at."""
    fc = FakeComfy.start_in_thread()
    yield fc
    fc.stop()


@pytest.fixture
def sky(sky_offline: Any, comfy: FakeComfy) -> SkyDouble:
    """A SkyPilot SDK double whose healthy clusters answer on the FakeComfy."""
    return SkyDouble(endpoint_url=comfy.url.removeprefix("http://"))


@pytest.fixture
def book(tmp_path: Path) -> Iterator[ClusterLedger]:
    """The project's ledger (embedded SQLite in the data dir)."""
    ledger = open_ledger(NomadConfig(), tmp_path)
    yield ledger
    ledger.close()


def assert_nothing_unaccounted(sky: SkyDouble, book: ClusterLedger) -> None:
    """Every cluster that exists is open in the ledger, and each has its autostop armed."""
    assert sky.running() <= {r.name for r in book.open_rows()}
    assert sky.left_to_bill() == set()


def up(sky: SkyDouble, book: ClusterLedger, tmp_path: Path, offers: list[Offer]) -> Any:
    return launch.up(
        PlannedSky(sky, offers), make_spec(), tmp_path,
        health_timeout_s=1.0, ledger=book, sleep=no_sleep,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ("setup", "ClusterSetUpError"),
        ("docker_pull", "CommandError"),
        ("provision", "no capacity"),
        ("health", "system_stats"),
    ],
)
def test_way1_launch_failing_after_provisioning_is_torn_down_recorded_and_next_offer_tried(
    sky: SkyDouble, book: ClusterLedger, tmp_path: Path, stage: str, error: str
) -> None:
    """Way 1: a launch failing at provision/setup/docker pull/health is torn down, closed in the ledger, next offer up."""
    sky.script([stage, None])
    report = up(sky, book, tmp_path, [A, B])
    assert report.info.offer == B and len(report.attempts) == 1
    rows = book.rows_since(0)
    first, second = rows[0], rows[1]
    assert first.state is LedgerState.GONE and first.offer == A and error in (first.detail or "")
    assert second.state is LedgerState.UP and second.requested_by == "up"
    assert sky.calls.index(("down", NAME)) < len(sky.calls) - 1  # torn down before the next try
    # autostop armed with the node window: idle 10 + node margin 3
    assert sky.running() == {NAME} and sky.clusters[NAME].autostop_minutes == 13
    assert_nothing_unaccounted(sky, book)


def test_way5_run_script_that_ended_fails_the_wake_before_the_health_deadline(
    sky: SkyDouble, book: ClusterLedger, tmp_path: Path
) -> None:
    """Way 5 on clouds: the node's run job is FAILED (SkyPilot's job_status) while ComfyUI never
    answers: the wake fails with that reason, not the health timeout; next offer up."""
    sky.script(["run_fails", None])
    report = launch.up(
        PlannedSky(sky, [A, B]), make_spec(), tmp_path,
        health_timeout_s=60.0, ledger=book, sleep=no_sleep,
    )  # fmt: skip
    assert report.info.offer == B
    first = book.rows_since(0)[0]
    assert first.state is LedgerState.GONE
    assert "SkyPilot job 1 on nomad-test) ended FAILED" in (first.detail or "")
    assert "system_stats" not in (first.detail or "")  # not the health deadline
    assert_nothing_unaccounted(sky, book)


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({"name": NAME, "status": "INIT", "init_kind": "unhealthy",
          "init_status_reason": "node lost"}, "SkyPilot marks nomad-test failed: node lost"),
        (None, "vanished from SkyPilot"),
        ({"name": NAME, "status": "STOPPED"}, "STOPPED while starting"),
        ({"name": NAME, "status": "UP"}, None),
        ({"name": NAME, "status": "INIT"}, None),
    ],
)  # fmt: skip
def test_way5_startup_failure_reads_skypilots_cluster_status(
    sky: SkyDouble, status: dict[str, Any] | None, said: str | None
) -> None:
    """Failed/unhealthy, gone or stopped while starting ⇒ the reason; UP with its job running,
    or still INIT ⇒ None (the wake goes on)."""
    backend = PlannedSky(sky, [A])
    backend.launch(make_spec(), A)  # the run job (id 1) is RUNNING
    sky.status = lambda cluster_names, **kw: [status] if status else []  # type: ignore[method-assign]
    reason = backend.startup_failure(NAME)
    assert reason == said if said is None else said in (reason or "")


def test_way1_every_offer_failing_in_setup_leaves_nothing_running(
    sky: SkyDouble, book: ClusterLedger, tmp_path: Path
) -> None:
    """Three offers, three setup failures: three closed rows, no cluster, a message naming each try."""
    sky.script(["setup", "docker_pull", "setup"])
    with pytest.raises(NoCapacityError, match="3 offer") as info:
        up(sky, book, tmp_path, [A, B, C])
    assert "ClusterSetUpError" in info.value.message
    assert sky.running() == set() and book.open_rows() == []
    assert [r.state for r in book.rows_since(0)] == [LedgerState.GONE] * 3


def test_way1_teardown_that_cannot_be_confirmed_keeps_the_row_open_and_launches_nothing_else(
    sky: SkyDouble, book: ClusterLedger, tmp_path: Path
) -> None:
    """The API server is down during cleanup: no second launch; the ledger keeps the cluster; a later down closes it."""
    sky.script(["setup", None])
    sky.down_failures = 99
    with pytest.raises(launch.TeardownUnconfirmed, match="could not confirm"):
        up(sky, book, tmp_path, [A, B])
    assert [c for c in sky.calls if c[0] == "launch"] == [("launch", NAME)]
    (row,) = book.open_rows()
    assert row.state is LedgerState.FAILED and "SkyPilot API server" in (row.detail or "")
    assert sky.running() == {NAME}  # it exists, without autostop — and the ledger has it
    assert sky.running() <= {r.name for r in book.open_rows()}
    sky.down_failures = 0
    launch.down(PlannedSky(sky, [A]), tmp_path, NAME, ledger=book, sleep=no_sleep)
    assert sky.running() == set() and book.open_rows() == []


def test_way1_teardown_is_retried_before_giving_up(
    sky: SkyDouble, book: ClusterLedger, tmp_path: Path
) -> None:
    """Two failed downs then one that works: the failed try is confirmed gone and the next offer launches."""
    sky.script(["setup", None])
    sky.down_failures = 2
    report = up(sky, book, tmp_path, [A, B])
    assert report.info.offer == B and sky.calls.count(("down", NAME)) == 3
    assert_nothing_unaccounted(sky, book)


class Pool:
    """Stands in for the worker pool (no jobs run here)."""

    def start_cluster(self, rt: Any) -> None:
        pass

    async def stop_cluster(self, name: str) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 20_000 * 86400.0 + 3600

    def __call__(self) -> float:
        return self.now


async def test_way1_autoscaler_launch_failing_in_setup_is_torn_down_and_idles_away(
    sky: SkyDouble, tmp_path: Path
) -> None:
    """Way 1 in BackendOps: setup fails on the cheapest offer ⇒ torn down, next offer serves, then idles down."""
    clock = Clock()
    book = open_ledger(NomadConfig(), tmp_path, clock=clock)
    queue = book.queue
    assert isinstance(queue, SqlQueue)
    ops = BackendOps(
        PlannedSky(sky, [A, B]), LaunchSpec(cluster_name="x", image_ref=make_spec().image_ref),
        tmp_path, health_timeout_s=1.0, clock=clock, ledger=book, sleep=no_sleep,
    )  # fmt: skip
    policy = Policy(PolicyConfig(idle_seconds=60.0, drain_seconds=5.0, base_name="demo-serve"))
    scaler = Autoscaler(queue, ops, policy, Pool(), clock=clock, status_every=10.0)
    sky.script(["setup", None])
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    rows = book.rows_since(0)
    assert [r.state for r in rows] == [LedgerState.GONE, LedgerState.UP]
    assert rows[0].requested_by == "autoscaler" and "ClusterSetUpError" in (rows[0].detail or "")
    assert_nothing_unaccounted(sky, book)
    queue.cancel(job.id)
    for _ in range(4):  # the idle window and the drain pass
        clock.now += 30
        await scaler.step()
    assert sky.running() == set() and book.open_rows() == []
    book.close()


# -- the local backend, real processes ----------------------------------------------------------


def _local(tmp_path: Path, command: list[str]) -> Any:
    from nomad.backends.local import LocalBackend
    from nomad.config.schema import LocalBackendConfig

    return LocalBackend(LocalBackendConfig(mode="command", command=command), tmp_path)


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ([sys.executable, "-c", "import sys; sys.exit(3)"], "exited"),  # crashes at start
        ([sys.executable, "-c", "import time; time.sleep(600)"], "system_stats"),  # never answers
    ],
)
def test_way1_local_server_that_never_serves_is_torn_down_and_its_row_closed(
    book: ClusterLedger, tmp_path: Path, command: list[str], error: str
) -> None:
    """Real processes: a ComfyUI that exits at start or never answers ⇒ launch fails, processes gone, row closed."""
    from nomad.backends.local.process import free_port

    backend = _local(tmp_path, command)
    spec = make_spec(cluster_name="box", comfy_port=free_port())
    with pytest.raises(NoCapacityError):
        launch.up(backend, spec, tmp_path, health_timeout_s=3.0, max_attempts=1, ledger=book)
    assert book.open_rows() == []
    (row,) = book.rows_since(0)
    assert row.state is LedgerState.GONE and row.requested_by == "up"
    assert "launch failed" in (row.detail or "") and error in (row.detail or "")
    assert backend.status("box").state.value == "gone"
    assert not (tmp_path / "local" / "box").exists()
