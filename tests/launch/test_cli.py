"""`nomad up/status/down` through the CLI (FakeBackend), and behaviour without the sky extra."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from nomad.cli.main import cli
from nomad.errors import NotAvailableError, UsageError
from nomad.testing.backend import FakeBackend
from nomad.testing.comfy import FakeComfy
from tests.launch.conftest import IMAGE


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    """A FakeBackend (endpoint: a FakeComfy on loopback) returned by get_backend."""
    comfy = FakeComfy.start_in_thread()
    backend = FakeBackend(endpoints=[comfy.url], price_per_hour=0.5)
    monkeypatch.setattr("nomad.backends.get_backend", lambda *a, **k: backend)
    yield backend
    comfy.stop()


def _invoke(tmp_path: Path, *args: str) -> Result:
    cfg = tmp_path / "nomad.yaml"
    if not cfg.exists():
        cfg.write_text("project: demo\ninfra: {gpus: [RTX4090]}\n")
    return CliRunner().invoke(cli, ["-c", str(cfg), "--data-dir", str(tmp_path / "data"), *args])


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    res = _invoke(tmp_path, *args)
    return res.exit_code, res.output


def test_up_status_down_json(fake: FakeBackend, tmp_path: Path) -> None:
    """up --json records an UP cluster; status --json shows it; down --json reports spend and clears it."""
    code, out = _run(tmp_path, "up", "--image", IMAGE, "--json")
    assert code == 0, out
    assert json.loads(out)["state"] == "up"
    code, out = _run(tmp_path, "status", "--json")
    (cluster,) = json.loads(out)["clusters"]
    assert cluster["name"] == "nomad-demo" and cluster["endpoints"][0]["url"] == fake.endpoints[0]
    assert cluster["price_per_hour"] == 0.5 and cluster["spend_usd"] >= 0
    code, out = _run(tmp_path, "down", "--json")
    (gone,) = json.loads(out)["clusters"]
    assert code == 0 and gone["state"] == "gone" and gone["requested_by"] == "up"
    after = json.loads(_run(tmp_path, "status", "--json")[1])
    assert after["clusters"] == [] and after["spend_today"] > 0  # the spend stays in the ledger


def test_up_without_a_push_says_what_to_do(fake: FakeBackend, tmp_path: Path) -> None:
    """No pushed image ⇒ exit 2 with the build/push hint, and nothing launched."""
    res = _invoke(tmp_path, "up")
    assert isinstance(res.exception, UsageError) and res.exception.exit_code == 2
    assert "nomad push" in (res.exception.hint or "")
    assert fake.calls == []


def test_down_of_nothing_is_success(fake: FakeBackend, tmp_path: Path) -> None:
    """down with nothing recorded exits 0 (idempotent teardown)."""
    code, out = _run(tmp_path, "down")
    assert code == 0 and "nothing" in out


def test_dry_run_prints_a_validated_task_without_secrets(sky_offline: Any, tmp_path: Path) -> None:
    """up --dry-run prints the SkyPilot task (validated by sky) with the password masked."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text("registry: {username: robot, password: hunter2}\ninfra: {gpus: [L4, RTX4090]}\n")
    code, out = _run(tmp_path, "up", "--image", IMAGE, "--dry-run")
    assert code == 0, out
    assert "hunter2" not in out and "SKYPILOT_DOCKER_PASSWORD: '***'" in out
    # the node's switches wait idle 10 + margin 3 minutes: serve always decides first
    assert f"docker:{IMAGE}" in out and "idle_minutes: 13" in out
    assert "NOMAD_IDLE_MINUTES: '13'" in out


def test_plan_without_sky_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With `sky` unimportable, plan exits 3 and prints pip install 'nomad-comfy[sky]'."""
    monkeypatch.setitem(sys.modules, "sky", None)
    res = _invoke(tmp_path, "plan")
    assert isinstance(res.exception, NotAvailableError) and res.exception.exit_code == 3
    assert res.exception.hint == "pip install 'nomad-comfy[sky]'"


def test_help_and_status_work_without_sky(tmp_path: Path) -> None:
    """In a fresh interpreter where `import sky` fails, --help and status work; plan names the extra."""
    script = (
        "import sys; sys.modules['sky'] = None\n"
        "from nomad.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    base = [sys.executable, "-c", script, "--data-dir", str(tmp_path)]
    helped = subprocess.run([*base, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "plan" in helped.stdout
    st = subprocess.run(
        [*base, "status", "--json"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert st.returncode == 0, st.stderr
    assert json.loads(st.stdout)["clusters"] == []
    planned = subprocess.run(
        [*base, "plan"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert planned.returncode == 3 and "pip install 'nomad-comfy[sky]'" in planned.stderr


def test_up_and_status_for_people(fake: FakeBackend, tmp_path: Path) -> None:
    """Without --json, up prints endpoint, $/hour and how to tear down; status shows the same cluster."""
    code, out = _run(tmp_path, "up", "--image", IMAGE)
    assert code == 0, out
    assert fake.endpoints[0] in out and "$0.50/h" in out and "nomad down nomad-demo" in out
    code, out = _run(tmp_path, "status")
    assert code == 0 and "nomad-demo [fake] UP" in out


def test_down_with_nothing_recorded_returns_at_once_and_starts_nothing(tmp_path: Path) -> None:
    """Nothing in the ledger ⇒ `down` exits 0 without building a backend, importing sky or creating a DB."""
    (tmp_path / "nomad.yaml").write_text("project: demo\ninfra: {backend: skypilot}\n")
    script = (
        "import sys; sys.modules['sky'] = None\n"
        "import nomad.backends as b\n"
        "def refuse(*a, **k): raise SystemExit('a backend was built')\n"
        "b.get_backend = refuse\n"
        "from nomad.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    base = [sys.executable, "-c", script, "-c", str(tmp_path / "nomad.yaml")]
    for args in (["down"], ["down", "nomad-demo"], ["down", "--json"]):
        res = subprocess.run(
            [*base, "--data-dir", str(tmp_path / "d"), *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "nothing to tear down" in res.stdout or json.loads(res.stdout) == {"clusters": []}
    assert not (tmp_path / "d" / "queue.db").exists()


def test_down_with_a_ledger_but_no_open_row_builds_no_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a cluster closed, `down` again reads the ledger and still asks no backend."""
    comfy = FakeComfy.start_in_thread()
    backend = FakeBackend(endpoints=[comfy.url], price_per_hour=0.5)
    built: list[str | None] = []

    def get_backend(name: str | None, *a: object, **k: object) -> FakeBackend:
        built.append(name)
        return backend

    monkeypatch.setattr("nomad.backends.get_backend", get_backend)
    try:
        assert _run(tmp_path, "up", "--image", IMAGE)[0] == 0
        assert _run(tmp_path, "down")[0] == 0
        built.clear()
        code, out = _run(tmp_path, "down")
        assert code == 0 and "nothing to tear down" in out and built == []
    finally:
        comfy.stop()


def test_a_cluster_recorded_before_the_ledger_is_shown_and_torn_down(
    fake: FakeBackend, tmp_path: Path
) -> None:
    """Upgrade path: a cluster only in the old per-cluster files is listed by status and removed by down."""
    from nomad.backends import state
    from nomad.backends.base import ClusterInfo, ClusterState, LaunchSpec

    fake.launch(LaunchSpec(cluster_name="nomad-demo", image_ref=IMAGE))
    state.save(
        tmp_path / "data", ClusterInfo("nomad-demo", "fake", ClusterState.UP, started_at=1.0)
    )
    code, out = _run(tmp_path, "status", "--json")
    (old,) = json.loads(out)["clusters"]
    assert (
        code == 0 and old["name"] == "nomad-demo" and "before the cluster ledger" in old["detail"]
    )
    code, out = _run(tmp_path, "down")
    assert code == 0 and "nomad-demo: down" in out
    assert fake.clusters == {} and state.load_all(tmp_path / "data") == []


def test_status_lists_every_cluster_in_the_ledger_whoever_launched_it(
    fake: FakeBackend, tmp_path: Path
) -> None:
    """`nomad up`'s cluster and serve's `demo-serve-2` both show, each with who asked, plus today's spend."""
    from nomad.backends.base import LaunchSpec
    from nomad.config.schema import NomadConfig
    from nomad.queue.ledger import open_ledger

    assert _run(tmp_path, "up", "--image", IMAGE)[0] == 0
    book = open_ledger(NomadConfig.model_validate({"project": "demo"}), tmp_path / "data")
    row = book.intend("demo-serve-2", "fake", "autoscaler", None, price_per_hour=0.5)
    info = fake.launch(LaunchSpec(cluster_name="demo-serve-2", image_ref=IMAGE))
    book.mark_up(row.id, [e.url for e in info.endpoints])
    book.close()
    code, out = _run(tmp_path, "status", "--json")
    doc = json.loads(out)
    assert code == 0 and {(c["name"], c["requested_by"]) for c in doc["clusters"]} == {
        ("nomad-demo", "up"),
        ("demo-serve-2", "autoscaler"),
    }
    assert doc["spend_today"] > 0 and doc["daily_budget"] is None
    code, out = _run(tmp_path, "status")
    assert "demo-serve-2 [fake] UP" in out and "(by autoscaler)" in out and "spent today" in out
