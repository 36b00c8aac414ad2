"""`nomad quickstart`: the README's main-job command, run as the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
NOMAD = str(Path(sys.executable).with_name("nomad"))


def test_quickstart_core_loop(tmp_path: Path) -> None:
    """Stack up, build, push, verify (registry API + skopeo) and plan, all offline; then a clean down."""
    data = tmp_path / "data"
    try:
        proc = subprocess.run(
            [NOMAD, "--data-dir", str(data), "quickstart"],
            capture_output=True, text=True, timeout=600, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "registry API: manifest digest ok, 6 blobs present" in out
        assert "skopeo inspect: 5 layers" in out
        assert "offer(s) via skypilot" in out
        pushed = json.loads((data / "images" / "last_push.json").read_text())
        assert pushed["ref"] in out and pushed["digest"].startswith("sha256:")
        again = subprocess.run(
            [NOMAD, "--data-dir", str(data), "quickstart", "--skip-plan"],
            capture_output=True, text=True, timeout=600,
        )
        assert again.returncode == 0, again.stderr
        assert "sent 0.0 MB" in again.stdout
    finally:
        subprocess.run([NOMAD, "--data-dir", str(data), "dev", "down"], capture_output=True, timeout=120)
