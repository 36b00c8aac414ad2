"""nomad build: determinism, config/manifest correctness, layer reuse, Dockerfile export."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad.config.schema import NomadConfig
from nomad.errors import BuildError, ModelFetchError
from nomad.images import BuildResult, ModelCache, OciLayout, build_image, inputs_from_config
from nomad.images._dockerfile import export_dockerfile
from nomad.images._fetch import fetch_models

from .conftest import DESTS

Project = Callable[..., tuple[NomadConfig, Path]]


def _build(cfg: NomadConfig, cdir: Path, out: Path, cache: Path) -> BuildResult:
    return build_image(inputs_from_config(cfg, cdir, cdir / "workflows"), out, ModelCache(cache))


def test_same_inputs_same_manifest_digest_with_fresh_caches(
    project: Project, tmp_path: Path
) -> None:
    """Two builds in two fresh cache and output dirs give the same manifest digest."""
    cfg, cdir = project()
    a = _build(cfg, cdir, tmp_path / "out1", tmp_path / "cache1")
    b = _build(cfg, cdir, tmp_path / "out2", tmp_path / "cache2")
    assert a.manifest_digest == b.manifest_digest
    assert (tmp_path / "out1/index.json").read_bytes() == (
        tmp_path / "out2/index.json"
    ).read_bytes()


def test_config_records_diff_ids_labels_env_port_history(project: Project, tmp_path: Path) -> None:
    """diff_ids equal the layer digests; labels name each model's sha256; port, env, history set."""
    cfg, cdir = project()
    res = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    layout = OciLayout(tmp_path / "out")
    manifest = layout.read_json(res.manifest_digest)
    config = layout.read_json(manifest["config"]["digest"])
    digests = [layer["digest"] for layer in manifest["layers"]]
    assert config["rootfs"]["diff_ids"] == digests
    assert len(digests) == 1 + 3 + 1  # busybox + one per model + files
    assert len(config["history"]) == len(digests)
    labels = config["config"]["Labels"]
    for dest in DESTS.values():
        assert labels[f"io.nomad.model.{dest}"].startswith("sha256:")
    assert "8188/tcp" in config["config"]["ExposedPorts"]
    assert "NOMAD_MODELS_ROOT=/opt/ComfyUI/models" in config["config"]["Env"]
    assert all(
        layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
        for layer in manifest["layers"]
    )


def test_workflow_change_rewrites_only_the_small_layer(project: Project, tmp_path: Path) -> None:
    """Editing a workflow changes the files layer and the manifest; weight layers keep their digests."""
    cfg, cdir = project()
    first = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    cfg2, _ = project(workflow_text='{"1": {"changed": true}}')
    second = _build(cfg2, cdir, tmp_path / "out", tmp_path / "cache")
    a, b = [x["digest"] for x in first.layers], [x["digest"] for x in second.layers]
    assert a[:-1] == b[:-1] and a[-1] != b[-1]
    assert first.manifest_digest != second.manifest_digest


@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")
def test_umoci_unpacks_and_weights_are_byte_identical(
    project: Project, tmp_path: Path, weights: dict[str, Path]
) -> None:
    """umoci (checks diff_ids) unpacks the layout; every weight sits byte-identical at its dest."""
    cfg, cdir = project()
    _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'out'}:t1", str(tmp_path / "b")],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "b" / "rootfs"
    for name, src in weights.items():
        assert (root / "opt/ComfyUI/models" / DESTS[name]).read_bytes() == src.read_bytes()
    assert json.loads((root / "opt/nomad/workflows/demo.json").read_text()) == {"1": {}}


def test_bad_sha256_stops_the_build_without_a_manifest(project: Project, tmp_path: Path) -> None:
    """A wrong sha256 fails the build naming the file, and nothing is tagged in the layout."""
    cfg, cdir = project()
    cfg.models["test"][0].sha256 = "f" * 64
    with pytest.raises(ModelFetchError, match=cfg.models["test"][0].dest):
        _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    assert OciLayout(tmp_path / "out").index()["manifests"] == []


def test_missing_base_layout_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    """An oci: base that does not exist names the path and suggests alternatives."""
    cfg, cdir = project()
    cfg.image.base = "oci:nowhere"
    with pytest.raises(BuildError, match="not an OCI layout") as err:
        _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    assert "busybox" in (err.value.hint or "")


def test_base_from_oci_layout_is_copied_untouched(project: Project, tmp_path: Path) -> None:
    """A base taken from an OCI layout keeps its layer digests as the first layers."""
    from nomad.images import write_base_layout

    write_base_layout(tmp_path / "base", "v1")
    base_manifest = OciLayout(tmp_path / "base").read_json(
        OciLayout(tmp_path / "base").resolve("v1").digest
    )
    cfg, cdir = project()
    cfg.image.base = f"oci:{tmp_path / 'base'}:v1"
    res = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    assert res.layers[0]["digest"] == base_manifest["layers"][0]["digest"]


def test_dockerfile_export_has_models_stage_and_copy_link(project: Project, tmp_path: Path) -> None:
    """The export has FROM scratch AS models, one COPY --link per weight, and staged files."""
    cfg, cdir = project()
    inputs = inputs_from_config(cfg, cdir, cdir / "workflows")
    fetched = fetch_models(inputs.models, ModelCache(tmp_path / "cache"), base_dir=cdir)
    exp = export_dockerfile(inputs, fetched, tmp_path / "df", "imgtest:t1")
    text = exp.dockerfile.read_text()
    assert "FROM scratch AS models" in text
    assert text.count("COPY --link --from=models") == 3
    for dest in DESTS.values():
        assert (tmp_path / "df/models" / dest).is_file()
    assert exp.command[:3] == ["docker", "buildx", "build"]
    assert text.startswith("# syntax=docker/dockerfile:1\n")  # COPY --link needs dockerfile:1
    assert "busybox:stable-musl" not in text and "\nFROM base\n" in text
    ctx = next(a for a in exp.command if a.startswith("base=oci-layout://"))
    from nomad.images import OciLayout

    assert OciLayout(Path(ctx.split("://", 1)[1].rsplit(":", 1)[0])).resolve("base")


def test_models_from_workflows_hook_adds_workflow_requirements() -> None:
    """With image.models_from_workflows, the enabled workflows' model files join the image (by dest)."""
    from nomad.config import load_text
    from nomad.images import models_for

    cfg = load_text(
        "image:\n  models_from_workflows: true\nworkflows:\n  enabled: [flux_schnell]\n"
    )
    specs = models_for(cfg)
    assert specs and all(s.source.startswith("https://") for s in specs)
    assert [s.dest for s in specs] == sorted(s.dest for s in specs)
    assert any(s.dest.startswith("diffusion_models/") for s in specs)


def test_base_index_resolves_to_linux_amd64_and_archive_works(
    project: Project, tmp_path: Path
) -> None:
    """A base whose tag points at an image index picks linux/amd64; oci-archive: reads a tarball."""
    import tarfile

    from nomad.images import write_base_layout
    from nomad.images._oci import OCI_INDEX, canonical_json

    amd = write_base_layout(tmp_path / "base", "amd")
    layout = OciLayout(tmp_path / "base")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                **amd.to_json(),
                "digest": "sha256:" + "e" * 64,
                "platform": {"os": "linux", "architecture": "arm64"},
            },
            {**amd.to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    layout.tag(layout.put_bytes(canonical_json(index), OCI_INDEX), "multi")
    base_layer = layout.read_json(amd.digest)["layers"][0]["digest"]
    cfg, cdir = project()
    cfg.image.base = f"oci:{tmp_path / 'base'}:multi"
    assert _build(cfg, cdir, tmp_path / "out", tmp_path / "cache").layers[0]["digest"] == base_layer
    with tarfile.open(tmp_path / "base.tar", "w") as tf:
        tf.add(tmp_path / "base", arcname=".")
    cfg.image.base = f"oci-archive:{tmp_path / 'base.tar'}:amd"
    assert (
        _build(cfg, cdir, tmp_path / "out2", tmp_path / "cache").layers[0]["digest"] == base_layer
    )


def test_builder_docker_says_clearly_when_buildx_is_missing(
    project: Project, tmp_path: Path
) -> None:
    """--builder docker without buildx raises NotAvailableError naming buildx and the Dockerfile."""
    import subprocess as sp

    from nomad.errors import NotAvailableError
    from nomad.images import run_buildx

    has_buildx = (
        shutil.which("docker")
        and sp.run(["docker", "buildx", "version"], capture_output=True).returncode == 0
    )
    if has_buildx:
        pytest.skip("docker buildx is installed here")
    cfg, cdir = project()
    inputs = inputs_from_config(cfg, cdir, cdir / "workflows")
    fetched = fetch_models(inputs.models, ModelCache(tmp_path / "cache"), base_dir=cdir)
    exp = export_dockerfile(inputs, fetched, tmp_path / "df", "imgtest:t1")
    with pytest.raises(NotAvailableError, match=r"buildx|docker"):
        run_buildx(exp)


def test_rebuild_collects_superseded_blobs(
    project: Project, tmp_path: Path, weights: dict[str, Path]
) -> None:
    """After a weight changes, the old weight layer leaves the layout; every kept blob is referenced."""
    cfg, cdir = project()
    first = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    weights["vae.safetensors"].write_bytes(b"new vae bytes")
    cfg2, _ = project()
    second = _build(cfg2, cdir, tmp_path / "out", tmp_path / "cache")
    old = {x["digest"] for x in first.layers} - {x["digest"] for x in second.layers}
    layout = OciLayout(tmp_path / "out")
    assert old and not any(layout.has(d) for d in old)
    assert all(layout.has(x["digest"]) for x in second.layers)
    assert layout.has(second.manifest_digest) and layout.has(second.config_digest)
