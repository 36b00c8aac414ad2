"""A local OCI image layout (image-spec v1): blobs by digest, index.json, oci-layout.

Blobs are written to a temporary name and renamed into ``blobs/sha256/<hex>``
only when complete, so a crash never leaves a blob whose name lies about its
bytes. JSON documents are serialised canonically (sorted keys, no spaces) so
the same content always has the same digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.errors import BuildError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

# Docker v2 media types -> their OCI twins (same bytes, so digests are unchanged).
TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER: OCI_LAYER,
}
REF_NAME = "org.opencontainers.image.ref.name"


def canonical_json(obj: Any) -> bytes:
    """The one serialisation nomad uses for configs and manifests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = dict(self.platform)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=str(d.get("mediaType", "")),
            digest=str(d["digest"]),
            size=int(d["size"]),
            annotations=dict(d.get("annotations") or {}),
            platform=dict(d["platform"]) if d.get("platform") else None,
        )


class OciLayout:
    """Read and write one OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def init(self) -> OciLayout:
        """Create the directory skeleton (idempotent)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            marker.write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            self._write_index({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
        return self

    def exists(self) -> bool:
        return (self.root / "oci-layout").is_file() and (self.root / "index.json").is_file()

    def blob_path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise BuildError(f"unsupported digest {digest!r} in {self.root}")
        return self.blobs / hexd

    def has(self, digest: str, size: int | None = None) -> bool:
        p = self.blob_path(digest)
        return p.is_file() and (size is None or p.stat().st_size == size)

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        """Store small content (config, manifest) and describe it."""
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return Descriptor(media_type, digest, len(data))

    def adopt(self, tmp: Path, digest: str) -> Path:
        """Move a finished temp file into place under its digest."""
        path = self.blob_path(digest)
        os.replace(tmp, path)
        return path

    def read_json(self, digest: str) -> dict[str, Any]:
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise BuildError(f"{self.root}: blob {digest} is missing") from None
        if sha256_digest(data) != digest:
            raise BuildError(f"{self.root}: blob {digest} is corrupt (digest mismatch)")
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise BuildError(f"{self.root}: blob {digest} is not a JSON object")
        return doc

    def index(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.root / "index.json").read_text())
        except FileNotFoundError:
            raise BuildError(
                f"{self.root} is not an OCI layout (no index.json)",
                hint="run `nomad build` first, or point at a directory made by skopeo/umoci",
            ) from None
        if not isinstance(doc, dict):
            raise BuildError(f"{self.root}/index.json is not a JSON object")
        return doc

    def _write_index(self, doc: dict[str, Any]) -> None:
        tmp = self.root / f".index.json.{os.getpid()}.tmp"
        tmp.write_bytes(canonical_json(doc))
        os.replace(tmp, self.root / "index.json")

    def tag(self, manifest: Descriptor, name: str) -> None:
        """Point ``name`` at ``manifest`` in index.json (replacing an older entry of that name)."""
        doc = self.index()
        kept = [
            m
            for m in doc.get("manifests", [])
            if (m.get("annotations") or {}).get(REF_NAME) != name
        ]
        ann = {**manifest.annotations, REF_NAME: name}
        entry = Descriptor(manifest.media_type, manifest.digest, manifest.size, ann).to_json()
        doc["manifests"] = [*kept, entry]
        self._write_index(doc)

    def resolve(self, name: str | None = None) -> Descriptor:
        """The manifest descriptor tagged ``name`` (or the only one when ``name`` is None)."""
        manifests = [Descriptor.from_json(m) for m in self.index().get("manifests", [])]
        if name is not None:
            hits = [m for m in manifests if m.annotations.get(REF_NAME) == name]
        else:
            hits = manifests
        if len(hits) != 1:
            names = sorted(m.annotations.get(REF_NAME, m.digest) for m in manifests)
            want = f"tag {name!r}" if name else "a single image"
            raise BuildError(
                f"{self.root}: expected {want}, found {len(hits)} (has: {', '.join(names) or '-'})",
                hint="name the tag as oci:PATH:TAG",
            )
        return hits[0]

    def gc(self) -> int:
        """Delete blobs no tagged manifest references (old weight layers); return bytes freed."""
        keep: set[str] = set()
        todo = [Descriptor.from_json(m) for m in self.index().get("manifests", [])]
        while todo:
            d = todo.pop()
            if d.digest in keep or not self.has(d.digest):
                continue
            keep.add(d.digest)
            if d.size < 4 * 1024 * 1024:  # manifests and indexes are small JSON
                try:
                    doc = json.loads(self.blob_path(d.digest).read_bytes())
                except ValueError:
                    continue
                if isinstance(doc, dict) and "schemaVersion" in doc:  # a manifest or index
                    refs = [doc.get("config"), *list(doc.get("layers") or [])]
                    refs += list(doc.get("manifests") or [])
                    todo += [
                        Descriptor.from_json(r)
                        for r in refs
                        if isinstance(r, dict) and "digest" in r
                    ]
        freed = 0
        for p in self.blobs.iterdir():
            if p.is_file() and not p.name.startswith(".") and f"sha256:{p.name}" not in keep:
                freed += p.stat().st_size
                p.unlink()
        return freed


@dataclass
class BaseImage:
    """A base whose blobs are present in the output layout."""

    config: dict[str, Any]
    layers: list[Descriptor]
    source: str
    digest: str = ""  # the base's manifest digest, when it has one (pin it in exports)


def pick_platform(
    index: dict[str, Any], spec: str, os_: str = "linux", arch: str = "amd64"
) -> Descriptor:
    """Choose the linux/amd64 manifest from an index / manifest list."""
    for m in index.get("manifests", []):
        plat = m.get("platform") or {}
        if plat.get("os") == os_ and plat.get("architecture") == arch:
            return Descriptor.from_json(m)
    raise BuildError(f"base {spec}: no {os_}/{arch} image in its manifest list")


def adopt_manifest(
    manifest: dict[str, Any], spec: str, dst: OciLayout, fetch: Callable[[Descriptor], None]
) -> BaseImage:
    """Fetch config + layers with ``fetch(descriptor)`` into ``dst`` (OCI media types)."""
    if "layers" not in manifest or "config" not in manifest:
        raise BuildError(
            f"base {spec}: manifest has no layers/config (schema 1 images are not supported)"
        )
    cfg_desc = Descriptor.from_json(manifest["config"])
    fetch(cfg_desc)
    config = dst.read_json(cfg_desc.digest)
    layers = []
    for raw in manifest["layers"]:
        d = Descriptor.from_json(raw)
        fetch(d)
        layers.append(
            Descriptor(TO_OCI.get(d.media_type, d.media_type), d.digest, d.size, d.annotations)
        )
    return BaseImage(config, layers, spec)
