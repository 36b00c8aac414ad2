"""nomad.lock: append-only weight layer order, explicit removal, reproducible, cross-repo mounts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.config import load_text
from nomad.config.schema import NomadConfig
from nomad.errors import BuildError
from nomad.images import OciLayout
from nomad.images._lock import LOCK_NAME
from nomad.images._service import build_from_config

from .conftest import stand_in

Project = Callable[..., tuple[NomadConfig, Path]]


def _lora_yaml(tmp_path: Path) -> str:
    data = stand_in("lora", 50_000)
    (tmp_path / "weights" / "style.safetensors").write_bytes(data)
    return (
        "  lora:\n    - dest: loras/style.safetensors\n      source: weights/style.safetensors\n"
        f"      sha256: {hashlib.sha256(data).hexdigest()}\n"
    )


def _build(cfg: NomadConfig, cdir: Path, out: Path, **kw: Any) -> Any:
    res, _ = build_from_config(
        cfg, config_dir=cdir, data_dir=cdir / "data", out=out, cache_dir=cdir / "cache", **kw
    )
    return res


def chain_ids(layout: OciLayout, digest: str) -> list[str]:
    """Docker's chain ids: ChainID(L0)=DiffID(L0); ChainID(Ln)=sha256(ChainID(Ln-1)+' '+DiffID(Ln))."""
    manifest = layout.read_json(digest)
    diff_ids = layout.read_json(manifest["config"]["digest"])["rootfs"]["diff_ids"]
    out = [diff_ids[0]]
    for d in diff_ids[1:]:
        out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def test_adding_a_lora_keeps_every_existing_layer_and_chain_id(
    project: Project, tmp_path: Path
) -> None:
    """The new LoRA is appended: existing layers keep order, digests and chain ids; only the new
    layer (and the small files layer above it) get new chain ids. Sorted by path (--relock), the
    LoRA would land in the middle and re-key text_encoders/ and vae/."""
    cfg, cdir = project()
    out = tmp_path / "out"
    first = _build(cfg, cdir, out)
    layout = OciLayout(out)
    before = chain_ids(layout, first.manifest_digest)
    lock = json.loads((cdir / LOCK_NAME).read_text())
    assert [x["dest"] for x in lock["layers"]] == [
        "diffusion_models/unet.safetensors", "text_encoders/clip.safetensors", "vae/vae.safetensors",
    ]  # fmt: skip
    assert [x["digest"] for x in lock["layers"]] == [x["digest"] for x in first.layers[1:4]]

    cfg2, _ = project(extra=_lora_yaml(tmp_path))
    second = _build(cfg2, cdir, out)
    after = chain_ids(layout, second.manifest_digest)
    assert [x["digest"] for x in second.layers[:4]] == [x["digest"] for x in first.layers[:4]]
    assert second.layers[4]["what"] == "nomad: model loras/style.safetensors"
    assert after[:4] == before[:4]  # base + the three weights: nothing to re-download
    assert after[4] not in before and len(after) == len(before) + 1
    assert second.layers[5]["digest"] == first.layers[4]["digest"]  # files layer: same blob
    lock = json.loads((cdir / LOCK_NAME).read_text())
    assert lock["layers"][-1]["dest"] == "loras/style.safetensors"

    sorted_build = _build(cfg2, cdir, tmp_path / "out2", relock=True)
    resorted = chain_ids(OciLayout(tmp_path / "out2"), sorted_build.manifest_digest)
    assert sorted_build.layers[2]["what"] == "nomad: model loras/style.safetensors"
    assert resorted[3:5] != after[2:4]  # what path order would have cost


def test_removing_a_weight_is_explicit_and_the_lock_reproduces_the_image(
    project: Project, tmp_path: Path
) -> None:
    """A weight missing from nomad.yaml but in the lock is an error naming it until --drop;
    nomad.yaml + nomad.lock copied to a fresh folder (new cache) give the same manifest digest."""
    cfg, cdir = project(extra=_lora_yaml(tmp_path))
    _build(cfg, cdir, tmp_path / "out")
    lines = (cdir / "nomad.yaml").read_text().split("  lora:\n")[0]
    cfg_less = load_text(lines)
    with pytest.raises(BuildError, match=r"loras/style\.safetensors is in .*nomad\.lock") as err:
        _build(cfg_less, cdir, tmp_path / "out")
    assert "--drop loras/style.safetensors" in (err.value.hint or "")
    dropped = _build(cfg_less, cdir, tmp_path / "out", drop=["loras/style.safetensors"])
    assert [x["dest"] for x in json.loads((cdir / LOCK_NAME).read_text())["layers"]] == [
        "diffusion_models/unet.safetensors", "text_encoders/clip.safetensors", "vae/vae.safetensors",
    ]  # fmt: skip

    cfg_lora, _ = project(extra=_lora_yaml(tmp_path))  # add it back: appended again
    again = _build(cfg_lora, cdir, tmp_path / "out")
    other = tmp_path / "machine2"
    shutil.copytree(cdir, other, ignore=shutil.ignore_patterns("out*", "cache", "data", "machine2"))
    twin = _build(cfg_lora, other, other / "out")
    assert twin.manifest_digest == again.manifest_digest != dropped.manifest_digest


def test_fresh_machine_mounts_from_the_repos_in_the_lock(
    stack: Any, project: Project, tmp_path: Path, weights: dict[str, Path]
) -> None:
    """After a push to repo A (recorded in nomad.lock), a fresh data dir (empty mount memory)
    pushing to new repo B mounts every blob from A: 0 bytes uploaded."""

    from nomad.images._service import locked_repos, remember_repo
    from nomad.registry import push_image

    weights["clip.safetensors"].write_bytes(os.urandom(100_000))
    cfg, cdir = project()
    _build(cfg, cdir, tmp_path / "out")
    common = {
        "url": stack.registry_url,
        "tag": "t1",
        "layout_dir": tmp_path / "out",
        "insecure": True,
    }
    push_image(repository="it/lock-a", data_dir=tmp_path / "d1", **common)
    remember_repo(cdir, "it/lock-a")
    assert locked_repos(cdir) == ["it/lock-a"]
    res = push_image(
        repository="it/lock-b", data_dir=tmp_path / "fresh", mount_from=locked_repos(cdir), **common
    )
    assert res.bytes_sent == 0 and res.count("mounted") == len(res.blobs)
    assert {b.source_repo for b in res.blobs} == {"it/lock-a"}
