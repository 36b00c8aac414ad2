"""Cluster records, get_backend, and FakeBackend's optional FakeComfy endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nomad import launch
from nomad.backends import get_backend, state
from nomad.backends.base import ClusterInfo, ClusterState, Endpoint, Offer
from nomad.backends.local import LocalBackend
from nomad.backends.local.process import pid_alive
from nomad.backends.skypilot import SkyPilotBackend
from nomad.backends.ssh import SSHBackend
from nomad.cli.main import cli
from nomad.config.schema import NomadConfig
from nomad.errors import BackendError, UsageError
from nomad.testing.backend import FakeBackend
from tests.launch.conftest import make_spec


def test_record_round_trip_and_current_endpoints(tmp_path: Path) -> None:
    """A record survives save/load unchanged; only UP clusters contribute endpoints."""
    offer = Offer("vast", "WA", "1x", "RTX4090", 2, 0.8, True, 24.0, {"flux": 0.001})
    up = ClusterInfo(
        "a",
        "skypilot",
        ClusterState.UP,
        [Endpoint("http://h:8188", 0), Endpoint("http://h:8189", 1)],
        offer,
        123.0,
        0.8,
    )
    state.save(tmp_path, up)
    state.save(tmp_path, ClusterInfo("b", "local", ClusterState.FAILED, [Endpoint("http://x:1")]))
    assert state.load(tmp_path, "a") == up
    assert state.current_endpoints(tmp_path) == ["http://h:8188", "http://h:8189"]
    assert not list((tmp_path / "clusters").glob(".tmp-*"))


def test_corrupt_record_and_bad_names_are_clear_errors(tmp_path: Path) -> None:
    """A garbled record names its file; a path-like cluster name is refused."""
    state.state_dir(tmp_path).joinpath("c.json").write_text("{not json")
    with pytest.raises(BackendError, match=r"c\.json"):
        state.load(tmp_path, "c")
    with pytest.raises(BackendError, match="invalid cluster name"):
        state.save(tmp_path, ClusterInfo("../x", "local", ClusterState.UP))


def test_get_backend_builds_each_backend_lazily(tmp_path: Path) -> None:
    """Names map to their classes without importing sky; unknown names are a UsageError."""
    cfg = NomadConfig()
    assert isinstance(get_backend("local", cfg, tmp_path), LocalBackend)
    assert isinstance(get_backend(None, cfg, tmp_path), SkyPilotBackend)
    assert isinstance(get_backend("ssh", cfg, tmp_path), SSHBackend)
    with pytest.raises(UsageError, match="unknown backend"):
        get_backend("gcp", cfg, tmp_path)


def test_fake_backend_can_serve_real_fakecomfy_endpoints(tmp_path: Path) -> None:
    """start_comfy=True: endpoints are FakeComfy processes that pass the health check and stop on teardown."""
    fake = FakeBackend(start_comfy=True)
    try:
        report = launch.up(fake, make_spec(gpu_count=2), tmp_path, health_timeout_s=60)
        assert len(report.info.endpoints) == 2
        procs = list(fake._comfy["nomad-test"])
        assert all(p.poll() is None for p in procs)  # type: ignore[attr-defined]
        launch.down(fake, tmp_path, "nomad-test")
        assert all(not pid_alive(p.pid) for p in procs)  # type: ignore[attr-defined]
    finally:
        fake.close()


def test_local_up_needs_no_pushed_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`nomad up --backend local` works before any push (command mode runs no image)."""
    fake = FakeBackend(endpoints=[])
    seen: list[str] = []
    monkeypatch.setattr("nomad.backends.get_backend", lambda *a, **k: fake)
    monkeypatch.setattr(
        launch, "up", lambda backend, spec, *a, **k: seen.append(spec.image_ref) or _stop()
    )
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text("infra: {backend: local}\n")
    res = CliRunner().invoke(cli, ["-c", str(cfg), "--data-dir", str(tmp_path), "up"])
    assert isinstance(res.exception, _Stop) and seen == [""]


class _Stop(Exception):
    pass


def _stop() -> None:
    raise _Stop
