"""Plans and launches price from one catalog: a relative infra.catalog_dir means the same folder for every front door."""

from __future__ import annotations

import os
from pathlib import Path

from nomad.backends import get_backend
from nomad.backends.skypilot.backend import SkyPilotBackend
from nomad.config.load import load_config


def test_relative_catalog_dir_is_anchored_at_the_config_file(tmp_path: Path) -> None:
    """serve and the bot build their backend from the loaded config: the catalog is nomad.yaml's folder + catalog_dir, whatever the cwd."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "nomad.yaml").write_text("infra:\n  catalog_dir: snap\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old = os.getcwd()
    os.chdir(elsewhere)
    try:
        cfg = load_config(tmp_path / "proj" / "nomad.yaml", environ={})
    finally:
        os.chdir(old)
    backend = get_backend("skypilot", cfg, tmp_path / "data")
    assert isinstance(backend, SkyPilotBackend)
    assert backend.catalog_dir == str(tmp_path / "proj" / "snap")
