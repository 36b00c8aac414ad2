"""Custom nodes become one deterministic layer: a local git repo fixture with a pip requirement.

Real git and real pip (offline: the requirement is a wheel this test writes,
found with --no-index --find-links). Two builds in fresh folders give the
same digest; another commit gives another one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from nomad.errors import BuildError
from nomad.images._custom_nodes import LOCK, SITE, build_layer, parse

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}  # fmt: skip


def wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel ``nomadtestdep 1.0`` (a real wheel file, written by hand)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "nomadtestdep/__init__.py": b"VALUE = 42\n",
        "nomadtestdep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: nomadtestdep\nVersion: 1.0\n",
        "nomadtestdep-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for name, data in files.items()
        )
        + "nomadtestdep-1.0.dist-info/RECORD,,\n"
    )
    path = folder / "nomadtestdep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in [*files.items(), ("nomadtestdep-1.0.dist-info/RECORD", record.encode())]:
            zf.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data)
    return path


def git_repo(path: Path) -> list[str]:
    """A custom node repo with two commits; returns their shas (oldest first)."""
    path.mkdir(parents=True)

    def run(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=path, env=GIT_ENV, check=True, capture_output=True, text=True
        )
        return done.stdout

    run("init", "-q", "-b", "main")
    (path / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (path / "requirements.txt").write_text("nomadtestdep==1.0\n")
    (path / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (path / "tool.sh").chmod(0o755)
    run("add", ".")
    run("commit", "-q", "-m", "one")
    first = run("rev-parse", "HEAD").strip()
    (path / "nodes.py").write_text("X = 1\n")
    (path / "untracked.tmp").write_text("never packed")
    run("add", "nodes.py")
    run("commit", "-q", "-m", "two")
    return [first, run("rev-parse", "HEAD").strip()]


def members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer.read_bytes())) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_same_inputs_same_digest_on_two_fresh_caches(tmp_path: Path) -> None:
    """Two builds in fresh folders: one digest; files, deps, modes and the lock are as pinned."""
    wheels = wheel(tmp_path / "wheels").parent
    first, second = git_repo(tmp_path / "MyNodes")
    spec = f"{tmp_path / 'MyNodes'}@{second}"
    pip = ["--no-index", "--find-links", str(wheels)]
    a = build_layer([spec], tmp_path / "cache-a" / "work", pip_args=pip)
    b = build_layer([spec], tmp_path / "cache-b" / "work", pip_args=pip)
    assert a.info.digest == b.info.digest and a.path.read_bytes() == b.path.read_bytes()
    got = members(a.path)
    assert "opt/ComfyUI/custom_nodes/MyNodes/nodes.py" in got
    assert not any("untracked" in n or "/.git/" in n or n.endswith(".pyc") for n in got)
    assert got["opt/ComfyUI/custom_nodes/MyNodes/tool.sh"].mode == 0o755
    assert f"{SITE.lstrip('/')}/nomadtestdep/__init__.py" in got
    assert all(m.mtime == 0 and m.uid == 0 for m in got.values())
    assert a.lock["custom_nodes"] == {
        "MyNodes": {"url": str(tmp_path / "MyNodes"), "rev": second, "commit": second}
    }
    assert a.lock["pip"] == ["nomadtestdep==1.0"] and LOCK.lstrip("/") in got
    older = build_layer([f"{tmp_path / 'MyNodes'}@{first}"], tmp_path / "c" / "work", pip_args=pip)
    assert older.info.digest != a.info.digest


def test_unpinned_or_unknown_revision_is_refused(tmp_path: Path) -> None:
    """No @REV is refused before any work; a revision the repo lacks names it."""
    with pytest.raises(BuildError, match="not pinned"):
        parse("https://example.invalid/x/MyNodes.git")
    git_repo(tmp_path / "MyNodes")
    with pytest.raises(BuildError, match="revision 'deadbeef' not found"):
        build_layer([f"{tmp_path / 'MyNodes'}@deadbeef"], tmp_path / "w")


def test_nomad_build_adds_the_layer_and_pythonpath(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`image.comfyui.custom_nodes` in nomad.yaml: the build has the layer; same digest twice."""
    from nomad.config.schema import NomadConfig
    from nomad.images import ModelCache, build_image, inputs_from_config

    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip reads its options from the environment
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheel(tmp_path / "wheels").parent))
    _, second = git_repo(tmp_path / "MyNodes")
    cfg = NomadConfig.model_validate(
        {
            "project": "cn",
            "image": {"comfyui": {"custom_nodes": [f"{tmp_path / 'MyNodes'}@{second}"]}},
        }
    )
    results = [
        build_image(
            inputs_from_config(cfg, tmp_path, None),
            tmp_path / f"out{i}",
            ModelCache(tmp_path / f"c{i}"),
        )
        for i in (1, 2)
    ]
    assert results[0].manifest_digest == results[1].manifest_digest
    (layer,) = [x for x in results[0].layers if "custom nodes" in x["what"]]
    assert layer["what"] == "nomad: custom nodes (MyNodes)"
    config = json.loads(
        (
            tmp_path / "out1" / "blobs" / "sha256" / results[0].config_digest.split(":")[1]
        ).read_text()
    )
    assert f"PYTHONPATH={SITE}" in config["config"]["Env"]


def test_constraints_are_applied_and_locked(tmp_path: Path) -> None:
    """A constraint the requirement contradicts stops the build with pip's reason; a fitting one is locked."""
    pip = ["--no-index", "--find-links", str(wheel(tmp_path / "wheels").parent)]
    _, second = git_repo(tmp_path / "MyNodes")
    spec = f"{tmp_path / 'MyNodes'}@{second}"
    ok = build_layer([spec], tmp_path / "a", constraints=["nomadtestdep<2"], pip_args=pip)
    assert ok.lock["constraints"] == ["nomadtestdep<2"] and ok.lock["pip"] == ["nomadtestdep==1.0"]
    with pytest.raises(BuildError, match="pip could not install"):
        build_layer([spec], tmp_path / "b", constraints=["nomadtestdep==2.0"], pip_args=pip)
