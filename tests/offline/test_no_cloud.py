"""Without any cloud credentials, plan/up fail at once with the three ways forward (no `sky check` wait)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nomad import cloud_access
from nomad.resources import catalog_dir

NOMAD = str(Path(sys.executable).with_name("nomad"))


def test_no_credentials_anywhere(tmp_path: Path) -> None:
    """An empty home and environment hold no credential source."""
    assert cloud_access.credential_sources(tmp_path, {}) == []


def test_credentials_are_found_in_files_and_env(tmp_path: Path) -> None:
    """A key file or a credentials variable counts, named by cloud and where it was found."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    found = cloud_access.credential_sources(tmp_path, {"VAST_API_KEY": "x"})
    assert found == ["aws: ~/.aws/credentials", "vast: $VAST_API_KEY"]


def _no_cloud_env(home: Path) -> dict[str, str]:
    import os

    keep = ("PATH", "LANG", "PYTHONPATH", "NOMAD_TEST_NETLOG", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep} | {"HOME": str(home)}


@pytest.mark.parametrize(
    "command", [["plan"], ["up", "--image", f"reg.example.com/x@sha256:{'a' * 64}"]]
)
def test_plan_and_up_without_credentials_answer_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Real `nomad plan`/`up` with no credentials: exit 5, `sky check`, the real catalog path, local|ssh."""
    if cloud_access._on_cloud_vm():
        pytest.skip(
            "on a cloud VM an instance role may be the credential: the slow path runs by design"
        )
    pytest.importorskip("sky")
    project = tmp_path / "p"
    project.mkdir()
    (project / "nomad.yaml").write_text("project: p\ninfra:\n  backend: skypilot\n")
    env = _no_cloud_env(tmp_path)
    proc = subprocess.run(
        [NOMAD, "--data-dir", str(tmp_path / "d"), *command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 5, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "no cloud credentials found" in err and "sky check" in err
    assert f"--catalog {catalog_dir()}" in err
    assert "infra.backend: local" in err and "ssh" in err


def test_no_credentials_never_starts_skypilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer comes before SkyPilot's plan worker (whose `sky check` takes 30-45 s) is started."""
    pytest.importorskip("sky")
    from nomad.backends.base import LaunchSpec
    from nomad.backends.skypilot import planner
    from nomad.errors import NoCloudAccessError

    def no_worker(*_a: object, **_k: object) -> None:
        raise AssertionError("the SkyPilot plan worker was started")

    monkeypatch.setattr(planner, "_run_worker", no_worker)
    monkeypatch.setattr(cloud_access, "_on_cloud_vm", lambda: False)
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "KUBECONFIG", "SKYPILOT_API_SERVER_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(NoCloudAccessError) as err:
        planner.plan(LaunchSpec(cluster_name="c", image_ref="", gpus=("RTX4090",)))
    assert str(catalog_dir()) in (err.value.hint or "")
