"""The local backend's node side, with real processes (FakeComfy as the server): its own dead-man's
switch, ports held per cluster, a start-up watch that reads the server's log, a scrubbed environment."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from nomad import launch
from nomad.backends.base import ClusterState
from nomad.backends.local import LocalBackend
from nomad.backends.local.process import free_port, is_secret_env, pid_alive
from nomad.config.schema import LocalBackendConfig
from nomad.errors import BackendError
from nomad.testing.wait import eventually
from nomad.watchdog import node_window_minutes, poll_seconds_for
from tests.launch.conftest import make_spec
from tests.launch.test_local_backend import COMFY
from tests.serve.test_serve_e2e import free_port_pair


def _backend(
    tmp_path: Path, *, command: list[str] = COMFY, gpus: int = 1, margin: float = 3.0
) -> LocalBackend:
    cfg = LocalBackendConfig(mode="command", command=command, gpus=gpus, price_per_hour=0.25)
    return LocalBackend(cfg, tmp_path, idle_margin_minutes=margin)


def test_node_window_is_longer_than_the_autoscalers() -> None:
    """The switch's window is idle + margin (never the autoscaler's own), and short windows poll often."""
    assert node_window_minutes(10) == 13.0
    assert node_window_minutes(10, 1.5) == 11.5
    with pytest.raises(ValueError):
        node_window_minutes(10, 0)
    assert poll_seconds_for(13) == 15.0 and poll_seconds_for(0.1) == 0.75


def test_idle_cluster_stops_itself(tmp_path: Path) -> None:
    """Nobody asks the servers anything: after the node window the supervisor stops them and the
    cluster reads GONE with the reason — no `nomad down`, no serve."""
    backend = _backend(tmp_path, gpus=2, margin=0.05)
    spec = make_spec(cluster_name="idle", comfy_port=free_port_pair(), idle_minutes=0.1)
    report = launch.up(backend, spec, tmp_path, health_timeout_s=60, max_attempts=1)
    pids = report.info.extra["pids"]
    assert report.info.extra["node_window_minutes"] == pytest.approx(0.15)  # 9 s > health polls
    try:
        eventually(
            lambda: not any(pid_alive(p) for p in pids),
            timeout=60,
            what="servers stopped by the switch",
        )
        gone = eventually(
            lambda: (s := backend.status("idle")).state is ClusterState.GONE and s,
            timeout=30,
            what="GONE",
        )
        assert "idle" in (gone.detail or "")
    finally:
        backend.teardown("idle")


def test_two_clusters_never_share_a_port(tmp_path: Path) -> None:
    """A second cluster asking for the same port gets the next free one; a port something else
    listens on is skipped too; teardown frees them."""
    backend = _backend(tmp_path)
    base = free_port_pair()
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", base + 1))
    squatter.listen()
    try:
        a = launch.up(
            backend, make_spec(cluster_name="a", comfy_port=base), tmp_path, health_timeout_s=60
        )
        b = launch.up(
            backend, make_spec(cluster_name="b", comfy_port=base), tmp_path, health_timeout_s=60
        )
        url_a, url_b = a.info.endpoints[0].url, b.info.endpoints[0].url
        assert url_a.endswith(f":{base}") and url_b != url_a
        assert not url_b.endswith(f":{base + 1}")
        assert "taken" in (b.info.detail or "")
        assert backend.held_ports() == {base: "a", int(url_b.rsplit(":", 1)[1]): "b"}
    finally:
        squatter.close()
        backend.teardown("a")
        backend.teardown("b")
    assert backend.held_ports() == {}


def test_exiting_server_fails_the_wake_with_its_log(tmp_path: Path) -> None:
    """A server that dies during start-up (here: 'no CUDA GPUs', exit 3) ends the wake with its exit
    code and the tail of its log instead of waiting out the health deadline; nothing is left."""
    crash = [
        sys.executable,
        "-c",
        "import sys; print('RuntimeError: no CUDA GPUs are available'); sys.exit(3)",
    ]
    backend = _backend(tmp_path, command=crash)
    spec = make_spec(cluster_name="dies", comfy_port=free_port())
    with pytest.raises(BackendError) as err:  # StartupFailedError, or the launcher's summary of it
        launch.up(backend, spec, tmp_path, health_timeout_s=600, max_attempts=1)
    assert "exited with code 3" in err.value.message and "no CUDA GPUs" in err.value.message
    assert backend.status("dies").state is ClusterState.GONE


SECRETS = {
    "NOMAD_BOT_TOKEN": "123:bot-secret",
    "NOMAD_QUEUE_URL": "postgresql://nomad:pgpass@db/nomad",
    "NOMAD_S3_SECRET_ACCESS_KEY": "s3-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "DATABASE_URL": "postgresql://u:dbpass@h/d",
    "HF_TOKEN": "hf_secret",
    "SOME_URL": "https://user:urlpass@example.com/x",
}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/environ")
def test_servers_get_a_scrubbed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc/<pid>/environ of a spawned server (and of its supervisor) holds none of nomad's secrets,
    but keeps PATH and gets its GPU and port."""
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    backend = _backend(tmp_path)
    spec = make_spec(cluster_name="env", comfy_port=free_port())
    report = launch.up(backend, spec, tmp_path, health_timeout_s=60, max_attempts=1)
    try:
        server = _environ(report.info.extra["pids"][0])
        sup = _environ(int(backend._json("env", "supervisor.json")["pid"]))
        for env in (server, sup):
            assert not set(SECRETS) & set(env)
            assert not [v for v in env.values() if any(s in v for s in SECRETS.values())]
            assert "PATH" in env
        assert server["CUDA_VISIBLE_DEVICES"] == "0" and server["NOMAD_COMFY_PORT"] == str(
            spec.comfy_port
        )
    finally:
        backend.teardown("env")


def test_secret_names_and_values() -> None:
    """The scrub rule: nomad's settings, keys, tokens, passwords, DSNs and user:pass@ URLs go; the rest stays."""
    assert all(is_secret_env(k, v) for k, v in SECRETS.items())
    for keep in ("PATH", "HOME", "LANG", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "HF_HOME"):
        assert not is_secret_env(keep, "/usr/bin")
    assert not is_secret_env("PIP_INDEX_URL", "https://pypi.example/simple")


def test_docker_mode_startup_failure_reads_the_stopped_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker mode: a container that exited during start-up is reported with its exit code and
    the tail of `docker logs` (through the SDK; a stand-in client here, no engine on CI)."""
    from types import SimpleNamespace

    from nomad.backends.local import docker_engine

    box = SimpleNamespace(
        name="nomad-box-0",
        labels={"nomad.cluster": "box", "nomad.gpu": "0", "nomad.port": "9000"},
        status="running",
        attrs={"State": {"ExitCode": 0}},
        logs=lambda tail: b"starting ComfyUI\nCUDA error: no kernel image is available\n",
    )

    class Containers:
        def list(self, all: bool, filters: dict[str, str]) -> list[SimpleNamespace]:
            return [box] if filters["label"] == "nomad.cluster=box" else []

    monkeypatch.setattr(docker_engine, "available", lambda: True)
    monkeypatch.setattr(docker_engine, "_client", lambda: SimpleNamespace(containers=Containers()))
    backend = LocalBackend(LocalBackendConfig(mode="docker"), tmp_path)
    (tmp_path / "local" / "box").mkdir(parents=True)
    (tmp_path / "local" / "box" / "cluster.json").write_text('{"mode": "docker", "ports": [9000]}')
    assert backend.startup_failure("box") is None
    box.status, box.attrs = "exited", {"State": {"ExitCode": 1}}
    reason = backend.startup_failure("box") or ""
    assert "nomad-box-0 exited (exit code 1)" in reason and "no kernel image" in reason


def test_ssh_startup_failure_is_skypilots_verdict(sky_offline: Any, tmp_path: Path) -> None:
    """SSH pools: a cluster SkyPilot marks failed (INIT/unhealthy) or no longer has ends the wake;
    a plain INIT or UP says nothing; a failing status call says nothing either."""
    from nomad.backends.ssh import SSHBackend
    from tests.launch.test_ssh_and_sky_backend import SkySdkStub, _ssh_cfg

    sdk = SkySdkStub()
    backend = SSHBackend(
        _ssh_cfg(tmp_path), tmp_path / "d", pools_path=tmp_path / "p.yaml", sdk=sdk
    )
    sdk.clusters["c"] = "INIT"
    assert backend.startup_failure("c") is None
    sdk.init_kind["c"] = "unhealthy"
    assert "failed: node terminated" in (backend.startup_failure("c") or "")
    del sdk.clusters["c"]
    assert "vanished" in (backend.startup_failure("c") or "")
    sdk.raise_on["status"] = RuntimeError("API server unreachable")
    assert backend.startup_failure("c") is None


def test_a_killed_supervisor_takes_its_servers_along(tmp_path: Path) -> None:
    """SIGKILL the supervisor itself: its servers get the parent-death signal and stop, so no
    server outlives its switch; the cluster then reads FAILED until torn down."""
    import os
    import signal

    backend = _backend(tmp_path)
    report = launch.up(
        backend,
        make_spec(cluster_name="orphan", comfy_port=free_port()),
        tmp_path,
        health_timeout_s=60,
    )
    try:
        sup = int(backend._json("orphan", "supervisor.json")["pid"])
        os.kill(sup, signal.SIGKILL)
        eventually(
            lambda: not any(pid_alive(p) for p in report.info.extra["pids"]),
            timeout=30,
            what="the servers to follow their supervisor",
        )
        assert backend.status("orphan").state is ClusterState.FAILED
    finally:
        backend.teardown("orphan")
    assert backend.status("orphan").state is ClusterState.GONE
