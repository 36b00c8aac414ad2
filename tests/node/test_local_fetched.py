"""The local backend with ``node.weights: fetched``: weights pulled on this host before ComfyUI starts.

Real: the stack's registry (images built by nomad and pushed), ``fetch_for_host``, the local
backend's supervisor and server process. Double: FakeComfy (the server), started by a shell
that first checks the weights are in the models folder — so a server that starts proves they
were there before it did.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from nomad import launch
from nomad.backends.base import ClusterState
from nomad.backends.local import LocalBackend
from nomad.backends.local.process import free_port
from nomad.config.schema import LocalBackendConfig, NodeConfig
from nomad.errors import ConfigError
from nomad.node.phases import read_jsonl
from tests.launch.conftest import make_spec
from tests.node.test_pull import TWO, Push, Regs

FAKE = f"{shlex.quote(sys.executable)} -m nomad.testing.comfy --host 127.0.0.1 --port {{port}}"


def test_command_mode_links_fetched_weights_before_comfyui_starts(
    registries: Regs, push_weights: Push, tmp_path: Path
) -> None:
    """launch pulls the image's weights into the node cache, links them into models_dir, then
    starts the server (which refuses to start without them); the fetch is a recorded phase."""
    pushed = push_weights(TWO, seed="local")
    image = f"{registries[False].split('://', 1)[1]}/{pushed.ref.split('/', 1)[1]}"
    models = tmp_path / "models"
    checks = " && ".join(f"test -f {shlex.quote(str(models / d))}" for d in pushed.files)
    cfg = LocalBackendConfig(
        mode="command", command=["sh", "-c", f"{checks} && exec {FAKE}"], models_dir=str(models)
    )
    node = NodeConfig(weights="fetched", cache_dir=str(tmp_path / "cache"))
    backend = LocalBackend(cfg, tmp_path, node=node)
    spec = make_spec(cluster_name="box", comfy_port=free_port(), image_ref=image,
                     registry_username=None, registry_password=None)  # fmt: skip
    report = launch.up(backend, spec, tmp_path, health_timeout_s=60, max_attempts=1)
    try:
        assert report.info.state is ClusterState.UP
        assert report.info.extra["weights"] == "fetched"
        for dest, data in pushed.files.items():
            assert (models / dest).is_symlink() and (models / dest).read_bytes() == data
    finally:
        launch.down(backend, tmp_path, "box")
    (ev,) = read_jsonl(tmp_path / "cold_start.jsonl")
    assert (ev["phase"], ev["ok"], ev["wake"]) == ("weights_fetch", True, "box")
    assert ev["bytes_moved"] >= sum(len(d) for d in pushed.files.values())


def test_command_mode_without_models_dir_is_a_config_error(tmp_path: Path) -> None:
    """Fetched weights need a models folder to link into: one clear line, nothing started."""
    cfg = LocalBackendConfig(mode="command", command=["true"])
    backend = LocalBackend(cfg, tmp_path, node=NodeConfig(weights="fetched"))
    with pytest.raises(ConfigError, match=r"infra.local.models_dir"):
        backend.launch(
            make_spec(cluster_name="box", image_ref="127.0.0.1:5000/x@sha256:" + "0" * 64)
        )
    assert not (tmp_path / "local" / "box").exists()


def test_docker_mode_runs_the_slim_image_with_read_only_weight_binds(
    registries: Regs, push_weights: Push, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker mode: the container is node.base_image with each cached weight bound read-only at its
    path (the Docker engine is a stand-in SDK client here: no engine on CI)."""
    from types import SimpleNamespace
    from typing import Any

    from nomad.backends.local import docker_engine
    from nomad.node import fetch_for_host

    pushed = push_weights(TWO, seed="dock")
    image = f"{registries[False].split('://', 1)[1]}/{pushed.ref.split('/', 1)[1]}"
    runs: list[dict[str, Any]] = []

    class Containers:
        def run(self, image: str, **kw: Any) -> SimpleNamespace:
            runs.append({"image": image, **kw})
            return SimpleNamespace(id="c1")

    monkeypatch.setattr(docker_engine, "_client", lambda: SimpleNamespace(containers=Containers()))
    sdk = SimpleNamespace(types=SimpleNamespace(DeviceRequest=lambda **kw: kw))
    monkeypatch.setitem(sys.modules, "docker", sdk)  # the SDK is not installed on CI
    node = NodeConfig(weights="fetched", base_image="reg/slim@sha256:" + "1" * 64)
    backend = LocalBackend(LocalBackendConfig(mode="docker"), tmp_path, node=node)
    fetched = fetch_for_host(image, cache_dir=tmp_path / "cache")
    spec = make_spec(cluster_name="box", image_ref=image)
    docker_engine.run(spec, [free_port()], **backend._fetched_docker(fetched))
    ((run,),) = [runs]
    assert run["image"] == node.base_image
    binds = {v["bind"]: (Path(src), v["mode"]) for src, v in run["volumes"].items()}
    assert len(binds) == len(pushed.files)
    for target, (src, mode) in binds.items():
        dest = next(d for d in pushed.files if target.endswith("/" + d))
        assert mode == "ro" and src.read_bytes() == pushed.files[dest]
