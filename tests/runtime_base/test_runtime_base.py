"""`nomad build` refuses real weights on a base without ComfyUI; base profiles say where ComfyUI lives."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from nomad.images._fetch import ModelSpec
from nomad.images._profiles import PROFILES, comfyui_dir, profile_for, real_weights
from nomad.testing.cli import run_nomad

HF = "https://huggingface.co/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors"
REAL_SIZE = 64 * 1024 * 1024  # the smallest file nomad counts as a real weight


def _tar(entries: list[tuple[str, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mode, ti.mtime = (0o755, 0) if data is None else (0o644, 0)
            if data is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def write_base(out: Path, entries: list[tuple[str, bytes | None]], tag: str = "t") -> str:
    """A one-layer OCI layout base written with tarfile (not nomad's writer); returns `oci:PATH:TAG`."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": f"sha256:{h}", "size": len(data)}

    layer = put(_tar(entries))
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}  # fmt: skip
    cfg = put(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }
    man = put(json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}  # fmt: skip
    (out / "index.json").write_text(json.dumps(index))
    (out / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return f"oci:{out}:{tag}"


COMFY_AT_COMFYUI = [("comfyui", None), ("comfyui/main.py", b"print('comfy')\n"),
                    ("comfyui/models", None)]  # fmt: skip


def _project(tmp_path: Path, base: str, models: str, models_root: str | None = None) -> Path:
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    image = f"image:\n  base: {base}\n  tag: t1\n"
    if models_root:
        image += f"  models_root: {models_root}\n"
    (root / "nomad.yaml").write_text(f"project: rb\n{image}models:\n  m:\n{models}")
    return root


def test_real_weights_on_busybox_are_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flux weights (a Hugging Face URL) on the busybox base: exit 2, the fix, no layout, no download."""
    root = _project(
        tmp_path,
        "busybox",
        f"    - dest: diffusion_models/flux1-schnell.safetensors\n      source: {HF}\n",
    )
    monkeypatch.chdir(root)
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    code, _out, err = run_nomad(tmp_path / "data", "build")
    assert code == 2, err
    assert "has no ComfyUI" in err and "/opt/ComfyUI/main.py" in err
    assert "nomad base build" in err and "nomad init --base" in err
    assert not (tmp_path / "data" / "images" / "rb").exists()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_stand_in_weights_still_build_on_busybox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small local stand-ins (tests, the quickstart) are not real weights: busybox stays fine for them."""
    root = _project(
        tmp_path, "busybox", "    - dest: vae/tiny.safetensors\n      source: tiny.bin\n"
    )
    (root / "tiny.bin").write_bytes(b"x" * 1000)
    monkeypatch.chdir(root)
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    code, _out, err = run_nomad(tmp_path / "data", "build")
    assert code == 0, err


def _real_local(root: Path) -> str:
    """A 64 MiB weight file (sparse: cheap on disk) — big enough to count as real."""
    path = root / "big.safetensors"
    with path.open("wb") as fh:
        fh.truncate(REAL_SIZE)
    return "    - dest: diffusion_models/big.safetensors\n      source: big.safetensors\n"


def test_real_weights_build_on_a_base_with_comfyui_where_the_profile_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base with /comfyui/main.py (the runpod-worker-comfyui layout) + models_root /comfyui/models builds."""
    base = write_base(tmp_path / "base", COMFY_AT_COMFYUI)
    root = _project(tmp_path, base, "", "/comfyui/models")
    (root / "nomad.yaml").write_text((root / "nomad.yaml").read_text() + _real_local(root))
    monkeypatch.chdir(root)
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    code, out, err = run_nomad(tmp_path / "data", "build", "--json")
    assert code == 0, err
    assert json.loads(out)["digest"].startswith("sha256:")


def test_same_base_with_comfyui_elsewhere_than_configured_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same base with the default models_root (/opt/ComfyUI/models): ComfyUI is not there → exit 2."""
    base = write_base(tmp_path / "base", COMFY_AT_COMFYUI)
    root = _project(tmp_path, base, "")
    (root / "nomad.yaml").write_text((root / "nomad.yaml").read_text() + _real_local(root))
    monkeypatch.chdir(root)
    code, _out, err = run_nomad(tmp_path / "data", "build")
    assert code == 2 and "/opt/ComfyUI/main.py is not in its layers" in err


def test_a_whiteout_removes_comfyui() -> None:
    """base_has_file honours a later layer's whiteout of main.py."""
    import tempfile

    from nomad.images._profiles import base_has_file
    from nomad.registry._oci import BaseImage, Descriptor, OciLayout

    with tempfile.TemporaryDirectory() as tmp:
        layout = OciLayout(Path(tmp)).init()
        lower = layout.put_bytes(_tar(COMFY_AT_COMFYUI), "application/vnd.oci.image.layer.v1.tar")
        upper = layout.put_bytes(
            _tar([("comfyui/.wh.main.py", b"")]), "application/vnd.oci.image.layer.v1.tar"
        )
        base = BaseImage(config={}, layers=[lower], source="t")
        assert base_has_file(layout, base, "/comfyui/main.py")
        base = BaseImage(config={}, layers=[lower, upper], source="t")
        assert not base_has_file(layout, base, "/comfyui/main.py")
        assert isinstance(lower, Descriptor)


def test_profiles_match_references_and_say_where_comfyui_lives() -> None:
    """Tags, digests and registry prefixes resolve to the same profile; unknown images to none."""
    runpod = profile_for("runpod/worker-comfyui:5.5.1-base")
    assert runpod is not None and runpod.comfyui_dir == "/comfyui"
    assert profile_for(f"docker.io/runpod/worker-comfyui@sha256:{'a' * 64}") is runpod
    assert profile_for("ghcr.io/someone/else:1") is None
    for p in PROFILES:
        assert comfyui_dir(p.models_root) == p.comfyui_dir
        assert p.start_command(8190).endswith("--port 8190")


def test_what_counts_as_real_weights(tmp_path: Path) -> None:
    """Remote sources and ≥ 64 MiB files are real; loopback test servers and small local files are not."""
    (tmp_path / "small").write_bytes(b"x")
    specs = [
        ModelSpec("a/hf", HF, None, None),
        ModelSpec("a/s3", "s3://bucket/w", None, None),
        ModelSpec("a/loop", "http://127.0.0.1:8000/w", None, None),
        ModelSpec("a/small", "small", None, None),
        ModelSpec("a/declared", "small", None, REAL_SIZE),
    ]
    assert real_weights(specs, tmp_path) == ["a/hf", "a/s3", "a/declared"]
    assert os.path.exists(tmp_path / "small")
