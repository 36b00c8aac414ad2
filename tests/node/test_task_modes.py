"""Baked vs fetched SkyPilot tasks: SkyPilot's own validation, and the fetched run script for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.base import Offer
from nomad.backends.local.process import free_port
from nomad.backends.skypilot.task import (
    DOCKER_SECRETS,
    NODE_PKG_REMOTE,
    NODE_SECRETS,
    build_task_config,
    load_template,
    to_sky_task,
)
from nomad.errors import ConfigError
from nomad.node.phases import read_jsonl
from tests.launch.conftest import IMAGE, make_spec, sky_offline  # noqa: F401 - fixture

from .conftest import MiB, Pushed

SLIM = "registry.example.com/nomad/comfy@sha256:" + "cd" * 32
AWS = Offer("aws", "us-east-1", "g6.xlarge", "L4", 1, 0.80, False, 24.0)
RUNPOD = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)


def test_vm_cloud_task_is_fetched_and_passes_sky_validation(sky_offline: Any) -> None:  # noqa: F811
    """AWS + slim image: no image_id (the VM runs the script), nomad shipped, node secrets; sky accepts it."""
    spec = make_spec(envs={"NOMAD_BASE_IMAGE": SLIM})
    cfg = build_task_config(spec, offer=AWS)
    assert "image_id" not in cfg["resources"]
    assert cfg["envs"]["NOMAD_WEIGHTS_MODE"] == "fetched"
    assert (cfg["envs"]["NOMAD_IMAGE"], cfg["envs"]["NOMAD_BASE_IMAGE"]) == (IMAGE, SLIM)
    assert "'httpx" in cfg["envs"]["NOMAD_NODE_DEPS"]
    assert Path(cfg["file_mounts"][NODE_PKG_REMOTE], "node", "_fetch.py").is_file()
    assert set(cfg["secrets"]) == set(NODE_SECRETS)
    assert "node pull" in cfg["run"] and "pip install" in cfg["setup"]
    task = to_sky_task(cfg)
    (res,) = list(task.resources)
    assert res.extract_docker_image() is None and str(res.cloud).lower() == "aws"
    assert task.secrets["NOMAD_REGISTRY_PASSWORD"].get_secret_value() == "s3cret-pw"
    assert task.envs["NOMAD_WEIGHTS_MODE"] == "fetched"


def test_pod_cloud_task_is_baked_and_passes_sky_validation(sky_offline: Any) -> None:  # noqa: F811
    """RunPod: the image is the pod — full image as image_id with SkyPilot's docker login secrets."""
    spec = make_spec(envs={"NOMAD_BASE_IMAGE": SLIM})
    cfg = build_task_config(spec, offer=RUNPOD)
    assert cfg["resources"]["image_id"] == f"docker:{IMAGE}"
    assert cfg["envs"]["NOMAD_WEIGHTS_MODE"] == "baked" and set(cfg["secrets"]) == set(
        DOCKER_SECRETS
    )
    task = to_sky_task(cfg)
    assert next(iter(task.resources)).extract_docker_image() == IMAGE


def test_mode_rules_refuse_what_cannot_work() -> None:
    """fetched on RunPod, or fetched without a slim image, is a config error; auto without one bakes."""
    with pytest.raises(ConfigError, match="image is the pod"):
        build_task_config(
            make_spec(envs={"NOMAD_WEIGHTS_MODE": "fetched", "NOMAD_BASE_IMAGE": SLIM}),
            offer=RUNPOD,
        )
    with pytest.raises(ConfigError, match="slim image"):
        build_task_config(make_spec(envs={"NOMAD_WEIGHTS_MODE": "fetched"}), offer=AWS)
    assert build_task_config(make_spec(), offer=AWS)["envs"]["NOMAD_WEIGHTS_MODE"] == "baked"
    unpinned = make_spec(clouds=("aws",), envs={"NOMAD_BASE_IMAGE": SLIM})
    assert build_task_config(unpinned)["envs"]["NOMAD_WEIGHTS_MODE"] == "fetched"


def test_fetched_run_script_pulls_weights_mounts_them_and_records_phases(
    registries: dict[bool, str], push_weights: Callable[..., Pushed], tmp_path: Path
) -> None:
    """The template's run script, fetched branch, for real: real `nomad node pull` from the registry,
    ComfyUI (FakeComfy) started through EngineShim with every weight mounted :ro, phases in wake.jsonl."""
    pushed = push_weights({"vae/v.safetensors": 1 * MiB + 1, "loras/l.safetensors": 2 * MiB})
    host = registries[False].split("://", 1)[1]
    image = f"{host}/{pushed.ref.split('/', 1)[1]}"
    py = sys.executable
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "engine").write_text(
        f'#!/bin/sh\nexec {py} {Path(__file__).parent / "engine_shim.py"} "$@"\n'
    )
    (bindir / "nomad").write_text(
        f"#!/bin/sh\nexec {py} -c 'from nomad.cli.main import main; main()' \"$@\"\n"
    )
    for f in bindir.iterdir():
        f.chmod(0o755)
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "SHIM_LOG": str(tmp_path / "shim.jsonl"),
        "NOMAD_WEIGHTS_MODE": "fetched",
        "NOMAD_ENGINE": str(bindir / "engine"),
        "NOMAD_NODE_CMD": str(bindir / "nomad"),
        "NOMAD_IMAGE": image,
        "NOMAD_BASE_IMAGE": image + "-slim-not-pulled-by-the-shim",
        "NOMAD_REGISTRY_USERNAME": "robot",
        "NOMAD_REGISTRY_PASSWORD": "pw",
        "NOMAD_REGISTRY_SERVER": host,
        "NOMAD_COMFY_PORT": str(port),
        "NOMAD_COMFY_CMD": f"{py} -m nomad.testing.comfy --host 127.0.0.1",
        "NOMAD_IDLE_MINUTES": "0.05",
        "NOMAD_WATCHDOG_POLL_S": "0.5",
        "NOMAD_WATCHDOG_CMD": f"{py} -m nomad.watchdog",
        "NOMAD_WAKE_ID": "wake-1",
    }
    proc = subprocess.Popen(["bash", "-c", load_template()["run"]], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    shim = [json.loads(x) for x in (tmp_path / "shim.jsonl").read_text().splitlines()]
    assert [e["cmd"] for e in shim] == ["login", "pull", "run", "stop"]
    assert shim[0]["password_len"] == 2
    (run,) = [e for e in shim if e["cmd"] == "run"]
    targets = {m["target"]: Path(m["source"]).read_bytes() for m in run["mounts"]}
    assert targets == {f"/opt/ComfyUI/models/{k}": v for k, v in pushed.files.items()}
    events = read_jsonl(tmp_path / ".nomad" / "wake.jsonl")
    phases = [(e["phase"], e["ok"]) for e in events if e.get("event") == "cold_start.phase"]
    assert phases == [("base_pull", True), ("weights_fetch", True), ("comfy_start", True)]
    assert all(e["wake"] == "wake-1" for e in events if "wake" in e)
    assert "idle, stopping ComfyUI" in out


def test_fetched_setup_installs_core_deps_and_writes_a_working_nomad_wrapper(
    tmp_path: Path,
) -> None:
    """The template's setup, run for real: pip gets exactly the core requirements (quoted), and
    the ~/.nomad/bin/nomad it writes runs `nomad node --help`."""
    cfg = build_task_config(make_spec(envs={"NOMAD_BASE_IMAGE": SLIM}), offer=AWS)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # python3 double: records `-m pip …`, runs everything else with this interpreter
    (bindir / "python3").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then printf "%s\\n" "$@" > {tmp_path}/pip.args; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bindir / "python3").chmod(0o755)
    env = {**os.environ, **cfg["envs"], "HOME": str(tmp_path),
           "PATH": f"{bindir}:{os.environ['PATH']}"}  # fmt: skip
    subprocess.run(["bash", "-c", cfg["setup"]], env=env, check=True, timeout=60)
    pip_args = (tmp_path / "pip.args").read_text().splitlines()
    assert pip_args[:5] == ["-m", "pip", "install", "--user", "--quiet"]
    assert "httpx[socks]>=0.27" in pip_args and not any("extra" in a for a in pip_args)
    out = subprocess.run([str(tmp_path / ".nomad/bin/nomad"), "node", "--help"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "digest-keyed cache" in out.stdout, out.stderr


def test_ssh_pool_launch_fetches_so_the_rented_box_keeps_its_cache() -> None:
    """An SSH node-pool offer is a host nomad controls: fetched, cache under ~/.nomad on the box."""
    offer = Offer("ssh", "nomad-pool", None, "RTX5090", 2, 0.9, False)
    cfg = build_task_config(make_spec(gpu_count=2, envs={"NOMAD_BASE_IMAGE": SLIM}), offer=offer)
    assert cfg["envs"]["NOMAD_WEIGHTS_MODE"] == "fetched" and "image_id" not in cfg["resources"]
    assert cfg["resources"]["infra"] == "ssh/nomad-pool"
    assert "~/.nomad/cache" in cfg["run"] or "$HOME/.nomad/cache" in cfg["run"]
