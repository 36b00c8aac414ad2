"""`nomad init` chooses and names a runtime base; `nomad base profiles|build`; the node starts ComfyUI where the profile says."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from nomad.config import load_config
from nomad.resources import runtime_context_dir
from nomad.testing.cli import run_nomad


def test_init_sets_a_known_base_and_says_so(tmp_path: Path) -> None:
    """Default init writes a public ComfyUI base with its models_root and names the profile."""
    code, out, err = run_nomad(tmp_path / "d", "init", str(tmp_path / "p"))
    assert code == 0, err
    cfg = load_config(tmp_path / "p" / "nomad.yaml", environ={})
    assert cfg.image.base == "docker.io/runpod/worker-comfyui:5.5.1-base"
    assert cfg.image.models_root == "/comfyui/models"
    assert "profile runpod-worker-comfyui" in " ".join(out.split())


def test_init_with_an_unknown_base_says_where_comfyui_is_expected(tmp_path: Path) -> None:
    """--base with no profile keeps /opt/ComfyUI and says how to change it."""
    code, out, err = run_nomad(
        tmp_path / "d", "init", str(tmp_path / "p"), "--base", "ghcr.io/me/comfy:1"
    )
    assert code == 0, err
    cfg = load_config(tmp_path / "p" / "nomad.yaml", environ={})
    assert (cfg.image.base, cfg.image.models_root) == ("ghcr.io/me/comfy:1", "/opt/ComfyUI/models")
    assert "no known profile" in " ".join(out.split())


def test_base_profiles_json() -> None:
    """`nomad base profiles --json` lists each profile's ComfyUI folder, Python, start and models root."""
    code, out, err = run_nomad(Path("/tmp"), "base", "profiles", "--json")
    assert code == 0, err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["runpod-worker-comfyui"]["comfyui_dir"] == "/comfyui"
    assert rows["nomad-runtime"]["models_root"] == "/opt/ComfyUI/models"


def test_base_build_uses_the_shipped_context(tmp_path: Path) -> None:
    """`nomad base build --print` is one buildx command over the packaged images/comfyui context."""
    code, out, err = run_nomad(
        tmp_path,
        "base",
        "build",
        "--tag",
        "reg.example.com/rt:1",
        "--oci-archive",
        "rt.tar",
        "--print",
    )
    assert code == 0, err
    argv = shlex.split(out.strip())
    assert argv[:3] == ["docker", "buildx", "build"] and argv[-1] == str(runtime_context_dir())
    assert "type=oci,dest=rt.tar" in argv and (runtime_context_dir() / "Dockerfile").is_file()


def test_base_build_needs_exactly_one_output(tmp_path: Path) -> None:
    """Neither --push nor --oci-archive is a usage error (exit 2) naming both."""
    code, _out, err = run_nomad(tmp_path, "base", "build", "--tag", "x")
    assert code == 2 and "--push" in err and "--oci-archive" in err


@pytest.mark.parametrize(
    ("base", "models_root", "cmd"),
    [
        (
            "docker.io/runpod/worker-comfyui:5.5.1-base",
            "/comfyui/models",
            "/opt/venv/bin/python /comfyui/main.py",
        ),
        ("busybox", "/opt/ComfyUI/models", "python3 /opt/ComfyUI/main.py"),
    ],
)
def test_launch_starts_comfyui_where_the_config_says(base: str, models_root: str, cmd: str) -> None:
    """The LaunchSpec tells the node how to start ComfyUI (profile Python, folder above models_root)."""
    from nomad.config.schema import NomadConfig
    from nomad.launch import spec_from_config

    cfg = NomadConfig.model_validate({"image": {"base": base, "models_root": models_root}})
    spec = spec_from_config(cfg, Path("/nonexistent"), need_image=False)
    assert spec.envs["NOMAD_COMFY_CMD"].startswith(cmd + " --listen 0.0.0.0")
