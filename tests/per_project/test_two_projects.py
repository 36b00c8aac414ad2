"""State is per project: two projects in two folders each launch their own image; no nomad.yaml, no launch."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from nomad.registry._state import last_pushed
from nomad.testing.cli import run_nomad

pytestmark = pytest.mark.integration


def _project(root: Path, name: str, payload: bytes) -> Path:
    """A folder with nomad.yaml (busybox base, one small stand-in weight of its own)."""
    root.mkdir(parents=True)
    (root / "w.bin").write_bytes(payload)
    (root / "nomad.yaml").write_text(
        f"project: {name}\nimage:\n  base: busybox\n  tag: t\n"
        "models:\n  m:\n    - dest: vae/w.safetensors\n      source: w.bin\n"
        "infra:\n  backend: local\n"
    )
    return root


def _in(
    folder: Path, monkeypatch: pytest.MonkeyPatch, data: Path, *args: str
) -> tuple[int, str, str]:
    monkeypatch.chdir(folder)
    return run_nomad(data, *args)


def test_two_projects_each_launch_their_own_image(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Build+push A then B (same data dir); `nomad up --dry-run` in A's folder launches A's digest, in B's B's."""
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NOMAD_CONFIG", raising=False)
    tag = uuid.uuid4().hex[:6]
    a = _project(tmp_path / "a", f"proj-a-{tag}", b"A" * 4096)
    b = _project(tmp_path / "b", f"proj-b-{tag}", b"B" * 4096)
    digests = {}
    for folder in (a, b):
        for step in ("build", "push"):
            code, out, err = _in(folder, monkeypatch, stack.data_dir, step, "--json")
            assert code == 0, err
        digests[folder] = json.loads(out)["digest"]
    assert digests[a] != digests[b]
    for folder in (a, b):  # B was pushed last: A must still launch A
        code, out, err = _in(folder, monkeypatch, stack.data_dir, "up", "--dry-run")
        assert code == 0, err
        assert digests[folder] in out
        other = digests[b] if folder == a else digests[a]
        assert other not in out


def test_same_project_name_from_another_config_is_not_this_projects_push(tmp_path: Path) -> None:
    """A push recorded from one nomad.yaml is not the last push of a same-named project elsewhere."""
    from nomad.registry._state import record_push

    one, two = tmp_path / "one" / "nomad.yaml", tmp_path / "two" / "nomad.yaml"
    record_push(tmp_path, {"ref": "r@sha256:1", "digest": "sha256:1"}, project="p", config_path=one)
    assert last_pushed(tmp_path, "p", one) is not None
    assert last_pushed(tmp_path, "p", two) is None
    assert last_pushed(tmp_path, "q") is None  # another project's push is never used


def test_up_without_nomad_yaml_refuses_instead_of_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nomad up` where no nomad.yaml is found says so (exit 2) instead of launching on defaults."""
    monkeypatch.delenv("NOMAD_CONFIG", raising=False)
    empty = tmp_path / "nowhere"
    empty.mkdir()
    for args in (["up"], ["up", "--dry-run"]):
        code, _out, err = _in(empty, monkeypatch, tmp_path / "d", *args)
        assert code == 2 and "no nomad.yaml" in err and "nomad init" in err
