"""The runtime image files: entrypoint starts one server per GPU; model sets validate."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nomad.config.schema import NomadConfig
from nomad.resources import images_dir

RUNTIME = images_dir() / "comfyui"


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
def test_entrypoint_starts_one_server_per_gpu_and_exits_with_the_first_failure(
    tmp_path: Path,
) -> None:
    """With 3 GPUs it starts 3 servers on 8188+i with CUDA_VISIBLE_DEVICES=i; one dying stops all."""
    stub = tmp_path / "comfy"
    log = tmp_path / "log"
    # A stand-in server: records its GPU and args; GPU 2 exits 7 once all three have started.
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$CUDA_VISIBLE_DEVICES $*" >> {log}\n'
        f'if [ "$CUDA_VISIBLE_DEVICES" = 2 ]; then\n'
        f"  while [ $(wc -l < {log}) -lt 3 ]; do sleep 0.1; done; exit 7\n"
        "fi\n"
        "exec sleep 60\n"
    )
    stub.chmod(0o755)
    env = {
        **os.environ,
        "NOMAD_GPU_COUNT": "3",
        "COMFYUI_CMD": str(stub),
        "COMFYUI_LISTEN": "127.0.0.1",
    }
    done = subprocess.run(
        ["busybox", "sh", str(RUNTIME / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 7, done.stderr
    lines = sorted(log.read_text().splitlines())
    assert [line.split()[0] for line in lines] == ["0", "1", "2"]
    for i, line in enumerate(lines):
        assert f"--listen 127.0.0.1 --port {8188 + i} --disable-auto-launch" in line


def test_model_set_manifests_are_valid_config() -> None:
    """Every images/models/*.yaml validates as a `models:` section of nomad.yaml."""
    files = sorted((images_dir() / "models").glob("*.yaml"))
    assert files
    for f in files:
        cfg = NomadConfig.model_validate({"models": yaml.safe_load(f.read_text())})
        assert all(
            m.source.startswith("https://huggingface.co/") for s in cfg.models.values() for m in s
        )


def test_dockerfile_pins_comfyui_and_uses_entrypoint() -> None:
    """The runtime Dockerfile pins ComfyUI, exposes 8188, has a healthcheck and our entrypoint."""
    text = (RUNTIME / "Dockerfile").read_text()
    assert "ARG COMFYUI_VERSION=v" in text and '--branch "${COMFYUI_VERSION}"' in text
    assert "HEALTHCHECK" in text and "EXPOSE 8188" in text and "/opt/nomad/entrypoint.sh" in text
