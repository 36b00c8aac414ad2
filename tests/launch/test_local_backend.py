"""The local backend starts a real process (FakeComfy standing in for ComfyUI), checks it, stops it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nomad import launch
from nomad.backends.base import ClusterState
from nomad.backends.local import LocalBackend
from nomad.backends.local.process import free_port, pid_alive
from nomad.config.schema import LocalBackendConfig
from nomad.errors import ConfigError
from nomad.testing.wait import eventually
from tests.launch.conftest import make_spec

COMFY = [
    sys.executable,
    "-m",
    "nomad.testing.comfy",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--gpu-name",
    "gpu{gpu}",
]


def _backend(tmp_path: Path, **kw: object) -> LocalBackend:
    cfg = LocalBackendConfig(mode="command", command=COMFY, price_per_hour=0.25, **kw)  # type: ignore[arg-type]
    return LocalBackend(cfg, tmp_path)


def test_local_up_health_down_leaves_nothing_running(tmp_path: Path) -> None:
    """up starts FakeComfy as a real process, waits for /system_stats, down kills it (pid gone)."""
    backend = _backend(tmp_path)
    spec = make_spec(cluster_name="box", comfy_port=free_port())
    report = launch.up(backend, spec, tmp_path, health_timeout_s=60, max_attempts=1)
    try:
        assert report.info.state == ClusterState.UP
        assert report.info.endpoints[0].url == f"http://127.0.0.1:{spec.comfy_port}"
        pids = report.info.extra["pids"]
        assert len(pids) == 1 and pid_alive(pids[0])
        assert backend.status("box").state == ClusterState.UP
    finally:
        launch.down(backend, tmp_path, "box")
    assert not pid_alive(pids[0])
    assert backend.status("box").state == ClusterState.GONE
    assert not (tmp_path / "local" / "box").exists()


def test_dead_process_is_reported_failed(tmp_path: Path) -> None:
    """A server process that exits shows as FAILED with the log path; down still cleans up."""
    cfg = LocalBackendConfig(
        mode="command", command=[sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    backend = LocalBackend(cfg, tmp_path)
    backend.launch(make_spec(cluster_name="bad", comfy_port=free_port()))
    st = eventually(
        lambda: (s := backend.status("bad")).state == ClusterState.FAILED and s,
        timeout=30,
        what="FAILED",
    )
    assert "comfy-0.log" in (st.detail or "")
    backend.teardown("bad")
    backend.teardown("bad")
    assert backend.status("bad").state == ClusterState.GONE


def test_no_command_and_no_docker_is_a_config_error(tmp_path: Path) -> None:
    """Without a Docker engine and without infra.local.command the error says what to set."""
    from nomad.backends.local import docker_engine

    if docker_engine.available():
        pytest.skip("a Docker engine is present: auto mode uses it")
    backend = LocalBackend(LocalBackendConfig(mode="auto"), tmp_path)
    assert backend.mode() == "command"  # no engine: detected and fallen back
    with pytest.raises(ConfigError, match=r"infra.local.command"):
        backend.launch(make_spec(cluster_name="x"))
    assert not (tmp_path / "local" / "x" / "pids.json").exists()


def test_docker_mode_status_reads_the_containers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker mode has no pids file: status comes from the labelled containers (it said GONE)."""
    from types import SimpleNamespace

    from nomad.backends.local import docker_engine

    boxes = [
        SimpleNamespace(
            labels={"nomad.cluster": "box", "nomad.gpu": str(g), "nomad.port": str(9000 + g)},
            status=st,
        )
        for g, st in ((0, "running"), (1, "running"))
    ]

    class Containers:
        def list(self, all: bool, filters: dict[str, str]) -> list[SimpleNamespace]:
            return [
                b for b in boxes if filters["label"] == f"nomad.cluster={b.labels['nomad.cluster']}"
            ]

    monkeypatch.setattr(docker_engine, "available", lambda: True)
    monkeypatch.setattr(docker_engine, "_client", lambda: SimpleNamespace(containers=Containers()))
    backend = LocalBackend(LocalBackendConfig(mode="docker", price_per_hour=0.25), tmp_path)
    info = backend.status("box")
    assert info.state == ClusterState.UP
    assert [e.url for e in info.endpoints] == ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
    # privacy.node: the cluster's record names the hidden services; status reports those
    (tmp_path / "local" / "box").mkdir(parents=True)
    onions = ["http://" + "a" * 56 + ".anon", "http://" + "b" * 56 + ".anon"]
    (tmp_path / "local" / "box" / "cluster.json").write_text(json.dumps({"endpoints": onions}))
    assert [e.url for e in backend.status("box").endpoints] == onions
    boxes[1].status = "exited"
    assert backend.status("box").state == ClusterState.FAILED
    assert backend.status("other").state == ClusterState.GONE
