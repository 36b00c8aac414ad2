"""Weight layers never change the base's folders: a non-root base keeps its owner and modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad.config.schema import NomadConfig
from nomad.images import ModelCache, OciLayout, build_image, inputs_from_config

from .conftest import write_nonroot_base

Project = Callable[..., tuple[NomadConfig, Path]]


def _apply(layout: OciLayout, tag: str) -> dict[str, tuple[int, int, int]]:
    """Apply the image's layer tars in order: path -> (uid, gid, mode) of its last entry."""
    manifest = layout.read_json(layout.resolve(tag).digest)
    tree: dict[str, tuple[int, int, int]] = {}
    for layer in manifest["layers"]:
        with tarfile.open(layout.blob_path(layer["digest"])) as tf:
            for m in tf.getmembers():
                tree[m.name.rstrip("/")] = (m.uid, m.gid, m.mode)
    return tree


def test_nonroot_base_folders_keep_owner_and_mode(project: Project, tmp_path: Path) -> None:
    """After build on a base with /opt/ComfyUI owned 1000:1000 0775, no nomad layer has an entry
    for it (or models/, models/vae/), so the merged tree keeps the base's owner and mode."""
    write_nonroot_base(tmp_path / "base")
    cfg, cdir = project()
    cfg.image.base = f"oci:{tmp_path / 'base'}:t"
    out = tmp_path / "out"
    build_image(inputs_from_config(cfg, cdir, cdir / "workflows"), out, ModelCache(tmp_path / "c"))
    layout = OciLayout(out)
    tree = _apply(layout, "t1")
    for folder in ("opt/ComfyUI", "opt/ComfyUI/models", "opt/ComfyUI/models/vae"):
        assert tree[folder] == (1000, 1000, 0o775), folder
    assert tree["opt/ComfyUI/models/vae/vae.safetensors"][:2] == (0, 0)
    manifest = layout.read_json(layout.resolve("t1").digest)
    for layer in manifest["layers"][1:]:  # every nomad layer: files only, no directories
        with tarfile.open(layout.blob_path(layer["digest"])) as tf:
            assert not [m.name for m in tf.getmembers() if m.isdir()]


@pytest.mark.skipif(
    not shutil.which("umoci") or os.geteuid() != 0, reason="umoci as root keeps real owners"
)
def test_umoci_unpack_shows_the_base_owner(project: Project, tmp_path: Path) -> None:
    """umoci (an independent unpacker) gives /opt/ComfyUI 1000:1000 0775 and creates the
    parents the base lacks (/opt/nomad/workflows) as root 0755."""
    write_nonroot_base(tmp_path / "base")
    cfg, cdir = project()
    cfg.image.base = f"oci:{tmp_path / 'base'}:t"
    out = tmp_path / "out"
    build_image(inputs_from_config(cfg, cdir, cdir / "workflows"), out, ModelCache(tmp_path / "c"))
    subprocess.run(
        ["umoci", "unpack", "--image", f"{out}:t1", str(tmp_path / "b")],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "b" / "rootfs"
    st = (root / "opt/ComfyUI/models").stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o775)
    wf = (root / "opt/nomad/workflows").stat()
    assert (wf.st_uid, wf.st_mode & 0o7777) == (0, 0o755)
    assert (root / "opt/ComfyUI/models/vae/vae.safetensors").is_file()
