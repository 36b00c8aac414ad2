"""Fixtures for the launch tests: the pinned catalog, SkyPilot offline, specs, FakeComfy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad import resources
from nomad.backends.base import LaunchSpec

CATALOG = resources.catalog_dir()  # the snapshot nomad ships (package data)
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com/nomad/comfy@{DIGEST}"


@pytest.fixture(scope="session")
def catalog_dir() -> Path:
    """The pinned v8 catalog snapshot shipped with nomad."""
    return CATALOG


@pytest.fixture(scope="session")
def sky_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``sky`` imported in-process against a private runtime dir holding the pinned catalog.

    SKY_RUNTIME_DIR must be set before the first ``import sky``; every cloud of
    the catalog is enabled by replacing ``sky.check.get_cached_enabled_clouds_or_refresh``.
    """
    runtime = tmp_path_factory.mktemp("skyrt")
    shutil.copytree(CATALOG / "v8", runtime / ".sky" / "catalogs" / "v8")
    old = os.environ.get("SKY_RUNTIME_DIR")
    os.environ["SKY_RUNTIME_DIR"] = str(runtime)
    os.environ.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")  # offline: no telemetry calls
    sky = pytest.importorskip("sky")
    from sky.utils import registry

    from sky import check as sky_check

    clouds = [
        registry.CLOUD_REGISTRY.from_str(c) for c in ("aws", "gcp", "lambda", "runpod", "vast")
    ]
    original = sky_check.get_cached_enabled_clouds_or_refresh
    sky_check.get_cached_enabled_clouds_or_refresh = lambda *a, **k: list(clouds)
    try:
        yield sky
    finally:
        sky_check.get_cached_enabled_clouds_or_refresh = original
        if old is None:
            os.environ.pop("SKY_RUNTIME_DIR", None)
        else:
            os.environ["SKY_RUNTIME_DIR"] = old


def make_spec(**kw: Any) -> LaunchSpec:
    """A LaunchSpec with test defaults (pinned image, credentials, 1 GPU)."""
    base: dict[str, Any] = {
        "cluster_name": "nomad-test",
        "image_ref": IMAGE,
        "registry_username": "robot",
        "registry_password": "s3cret-pw",
        "gpus": ("RTX4090", "L4", "L40S", "A100-80GB", "H100"),
        "idle_minutes": 10,
        "disk_gb": 80,
    }
    base.update(kw)
    return LaunchSpec(**base)
