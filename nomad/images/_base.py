"""The runtime base image: where its layers come from.

``busybox``            a tiny base nomad makes itself from Debian's busybox-static (tests, demos)
``oci:PATH[:TAG]``     a local OCI layout (skopeo/umoci/buildx `type=oci` output)
``oci-archive:PATH``   the same, as a tar file
``REGISTRY/REPO:TAG``  any registry (Docker Hub/GHCR token auth, manifest lists -> linux/amd64)

The base's blobs are copied into the output layout untouched (same digests),
so pushing the built image copies them into the target registry once.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from nomad._compat import safe_extractall
from nomad.errors import BuildError
from nomad.images._tar import Entry, file_entry, write_layer_file
from nomad.registry import pull_image
from nomad.registry._oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    BaseImage,
    Descriptor,
    OciLayout,
    adopt_manifest,
    canonical_json,
    pick_platform,
)

BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "ls", "cat", "echo", "sleep", "sha256sum", "wget", "env", "mkdir", "true")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EPOCH = "1970-01-01T00:00:00Z"


def load_base(
    spec: str, layout: OciLayout, *, config_dir: Path, proxy: str | None = None
) -> BaseImage:
    """Bring the base named by ``spec`` into ``layout`` and describe it (a pull via ``proxy``)."""
    if spec == "busybox":
        return busybox_base(layout)
    if spec.startswith("oci:"):
        path, tag = _split_tag(spec[4:], config_dir)
        return _from_layout(OciLayout(path), tag, layout, spec)
    if spec.startswith("oci-archive:"):
        path, tag = _split_tag(spec[len("oci-archive:") :], config_dir)
        with tempfile.TemporaryDirectory(dir=layout.root) as tmp:
            _untar(path, Path(tmp))
            return _from_layout(OciLayout(Path(tmp)), tag, layout, spec)
    return pull_image(spec, layout, proxy=proxy)


def _split_tag(rest: str, config_dir: Path) -> tuple[Path, str | None]:
    path, sep, tag = rest.rpartition(":")
    if not sep or "/" in tag:
        path, tag = rest, ""
    p = Path(path).expanduser()
    return (p if p.is_absolute() else config_dir / p), (tag or None)


def _untar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            safe_extractall(tf, dest)  # filter="data" where Python has it (≥ 3.11.4)
    except (OSError, tarfile.TarError) as exc:
        raise BuildError(f"base {archive}: cannot read OCI archive: {exc}") from None


def _from_layout(src: OciLayout, tag: str | None, dst: OciLayout, spec: str) -> BaseImage:
    if not src.exists():
        raise BuildError(
            f"base {spec}: {src.root} is not an OCI layout",
            hint="set image.base to `busybox`, a registry reference, or an OCI layout",
        )
    desc = src.resolve(tag)
    manifest = src.read_json(desc.digest)
    if "manifests" in manifest:  # an image index / manifest list
        desc = pick_platform(manifest, spec)
        manifest = src.read_json(desc.digest)
    base = adopt_manifest(manifest, spec, dst, lambda d: _copy_blob(src, dst, d))
    base.digest = desc.digest
    return base


def _copy_blob(src: OciLayout, dst: OciLayout, d: Descriptor) -> None:
    if dst.has(d.digest, d.size):
        return
    s = src.blob_path(d.digest)
    if not s.is_file():
        raise BuildError(f"base {src.root}: blob {d.digest} is missing")
    tmp = dst.blobs / f".{d.digest[7:]}.{os.getpid()}.tmp"
    try:
        os.link(s, tmp)
    except OSError:
        shutil.copyfile(s, tmp)
    dst.adopt(tmp, d.digest)


def busybox_base(layout: OciLayout) -> BaseImage:
    """A one-layer base with /bin/busybox and a few applet links (deterministic)."""
    if not BUSYBOX.is_file():
        raise BuildError(
            "base busybox: /bin/busybox not found", hint="apt-get install busybox-static"
        )
    entries = [file_entry("bin/busybox", BUSYBOX, mode=0o755)]
    entries += [Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in BUSYBOX_APPLETS]
    entries += [Entry("tmp", "dir", mode=0o777 | 0o1000)]
    info, tmp = write_layer_file(entries, layout.blobs)
    layout.adopt(tmp, info.digest)
    layer = Descriptor(OCI_LAYER, info.digest, info.size)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": EPOCH,
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [info.digest]},
        "history": [{"created": EPOCH, "created_by": "nomad: busybox-static base"}],
    }
    layout.put_bytes(canonical_json(config), OCI_CONFIG)
    return BaseImage(config, [layer], "busybox")


def write_base_layout(out: Path, tag: str = "latest", *, comfyui_stub: str = "") -> Descriptor:
    """Write the busybox base as a standalone OCI layout (for `oci:` bases and tests).

    ``comfyui_stub`` (e.g. ``/opt/ComfyUI``): add a one-line stand-in ``main.py`` there, so
    benchmarks can carry big generated weights past the "base has no ComfyUI" check. It is
    not ComfyUI; the image cannot serve.
    """
    layout = OciLayout(out).init()
    base = busybox_base(layout)
    if comfyui_stub:
        stub = layout.root / ".main.py.stub"
        stub.write_text("raise SystemExit('stand-in base: not ComfyUI')\n")
        info, tmp = write_layer_file([file_entry(f"{comfyui_stub}/main.py", stub)], layout.blobs)
        stub.unlink()
        layout.adopt(tmp, info.digest)
        base.layers.append(Descriptor(OCI_LAYER, info.digest, info.size))
        base.config["rootfs"]["diff_ids"].append(info.digest)
        base.config["history"].append({"created": EPOCH, "created_by": "nomad: stand-in main.py"})
    cfg = layout.put_bytes(canonical_json(base.config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg.to_json(),
        "layers": [d.to_json() for d in base.layers],
    }
    desc = layout.put_bytes(canonical_json(manifest), OCI_MANIFEST)
    layout.tag(desc, tag)
    return desc
