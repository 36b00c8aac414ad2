"""Generated SkyPilot tasks pass SkyPilot's own validation (docker secrets, autostop, ports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nomad.backends.base import Offer
from nomad.backends.skypilot.task import (
    DOCKER_SECRETS,
    build_task_config,
    disk_gb_for_image,
    redacted,
    to_sky_task,
)
from nomad.errors import BackendError, ConfigError, UsageError
from tests.launch.conftest import IMAGE, make_spec


def test_any_of_task_passes_sky_validation(sky_offline: Any) -> None:
    """An any-of task becomes a sky.Task whose every candidate carries image, autostop, ports, disk."""
    spec = make_spec(gpu_count=2)
    task = to_sky_task(build_task_config(spec))
    assert isinstance(task, sky_offline.Task)
    accs = sorted(next(iter(r.accelerators)) for r in task.resources)
    assert accs == sorted(spec.gpus)
    for r in task.resources:
        assert r.extract_docker_image() == IMAGE
        assert (
            r.autostop_config.enabled
            and r.autostop_config.down
            and r.autostop_config.idle_minutes == 10
        )
        assert r.ports == ["8188-8189"] and r.disk_size == 80
        assert list(r.accelerators.values()) == [2]
    assert set(task.secrets) == set(DOCKER_SECRETS)
    assert task.secrets["SKYPILOT_DOCKER_SERVER"].get_secret_value() == "registry.example.com"
    assert task.envs["NOMAD_IDLE_MINUTES"] == "10" and task.envs["NOMAD_COMFY_PORT"] == "8188"


def test_ordered_task_is_an_ordered_preference(sky_offline: Any) -> None:
    """ordered=True yields SkyPilot's ordered list (a list, in our order), not an any-of set."""
    spec = make_spec(gpus=("L40S", "L4"), ordered=True)
    cfg = build_task_config(spec)
    assert cfg["resources"]["accelerators"] == ["L40S:1", "L4:1"]
    task = to_sky_task(cfg)
    assert isinstance(task.resources, list)
    assert [next(iter(r.accelerators)) for r in task.resources] == ["L40S", "L4"]


def test_offer_pins_cloud_region_instance_and_optimizer_accepts_it(sky_offline: Any) -> None:
    """A task pinned to one catalog offer validates and SkyPilot's optimizer prices it from the catalog."""
    offer = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)
    task = to_sky_task(build_task_config(make_spec(), offer=offer))
    dag = sky_offline.Dag()
    dag.add(task)
    from sky import optimizer

    optimizer.Optimizer.optimize(dag, minimize=sky_offline.OptimizeTarget.COST, quiet=True)
    best = task.best_resources
    assert (str(best.cloud).lower(), best.region, best.instance_type) == (
        "runpod",
        "US",
        "1x_L4_SECURE",
    )
    assert best.get_cost(3600) == pytest.approx(0.43)


def test_sky_rejects_incomplete_docker_login(sky_offline: Any) -> None:
    """SkyPilot's validator (not ours) refuses a docker image task with only some login secrets."""
    cfg = build_task_config(make_spec())
    del cfg["secrets"]["SKYPILOT_DOCKER_PASSWORD"]
    with pytest.raises(BackendError, match="SkyPilot rejected"):
        to_sky_task(cfg)


def test_unpinned_image_and_half_credentials_are_refused() -> None:
    """A tag instead of a digest, or a username without a password, is a clear error before SkyPilot."""
    with pytest.raises(UsageError, match="pinned by digest"):
        build_task_config(make_spec(image_ref="registry.example.com/nomad/comfy:latest"))
    with pytest.raises(ConfigError, match="incomplete"):
        build_task_config(make_spec(registry_password=None))


def test_public_image_has_no_secrets_and_redaction_masks_them() -> None:
    """No credentials ⇒ no secrets section; redacted() never shows the password."""
    assert "secrets" not in build_task_config(
        make_spec(registry_username=None, registry_password=None)
    )
    shown = redacted(build_task_config(make_spec()))
    assert "s3cret-pw" not in str(shown) and shown["secrets"]["SKYPILOT_DOCKER_PASSWORD"] == "***"


def test_disk_is_sized_from_the_image() -> None:
    """Disk covers the image twice plus headroom, never below the floor."""
    assert disk_gb_for_image(None) == 50
    assert disk_gb_for_image(40 * 10**9) == 110


def test_run_script_starts_one_comfy_per_gpu_and_the_watchdog() -> None:
    """The template's run script loops over GPUs with CUDA_VISIBLE_DEVICES and ports BASE+i, then watches."""
    run = build_task_config(make_spec())["run"]
    assert 'CUDA_VISIBLE_DEVICES="$i"' in run and "PORT=$((BASE + i))" in run
    assert "$WD $URLS --idle-minutes" in run and "kill $PIDS" in run


def test_watchdog_is_shipped_with_the_task(sky_offline: Any) -> None:
    """The watchdog file is a SkyPilot file mount, so any runtime image can run it."""
    task = to_sky_task(build_task_config(make_spec()))
    src = task.file_mounts["~/.nomad/watchdog.py"]
    assert src.endswith("nomad/watchdog.py") and "def main" in Path(src).read_text()
