"""Read every blob of an image back from the registry and hash it; repair what is corrupt.

A registry answers ``HEAD`` from its metadata, never from the bytes: one
flipped byte in a stored layer still says 200, a push reports "exists", a new
repository mounts the bad blob — and only the GPU node's pull fails. So
``verify`` downloads each blob (streamed, never written to disk) and compares
its sha256 and size with the manifest.

Repair: distribution keeps one ``data`` object per digest for every
repository and, on upload, skips the write when that object exists ("content
addressable, corruption is detected elsewhere"), so pushing again cannot fix
it. With the registry bucket's keys nomad rewrites the object from the local
OCI layout (after hashing the local copy); without them it names the object
to delete.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nomad.errors import RegistryError
from nomad.registry._client import CHUNK, RegistryAuthError, RegistryClient
from nomad.registry._oci import OciLayout

Progress = Callable[[str, int, int], None]  # (digest, bytes just read, blob size)


@dataclass
class BlobCheck:
    """One blob as read back: ``ok``, ``corrupt`` (hash or size differ), ``missing`` or ``error``."""

    digest: str
    size: int
    status: str
    detail: str = ""
    repaired: bool = False


@dataclass
class VerifyReport:
    """Every blob of one image, read back and hashed."""

    registry: str
    repository: str
    digest: str
    blobs: list[BlobCheck] = field(default_factory=list)

    @property
    def bad(self) -> list[BlobCheck]:
        return [b for b in self.blobs if b.status != "ok" and not b.repaired]

    @property
    def bytes_read(self) -> int:
        return sum(b.size for b in self.blobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": f"{self.registry}/{self.repository}@{self.digest}",
            "ok": not self.bad,
            "blobs": [
                {
                    "digest": b.digest,
                    "size": b.size,
                    "status": b.status,
                    "detail": b.detail,
                    "repaired": b.repaired,
                }
                for b in self.blobs
            ],
        }


def verify_image(
    client: RegistryClient,
    repo: str,
    reference: str,
    *,
    parallel: int = 4,
    progress: Progress | None = None,
) -> VerifyReport:
    """Download and hash the manifest's config and every layer (``parallel`` streams)."""
    raw, _ = client.get_manifest(repo, reference)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if reference.startswith("sha256:") and digest != reference:
        raise RegistryError(
            f"registry {client.host}: manifest {repo}@{reference} reads back as {digest}",
            hint="push the image again (the manifest itself is corrupt)",
        )
    doc = json.loads(raw)
    if "manifests" in doc:
        raise RegistryError(f"{repo}:{reference} is an index; verify one of its manifests")
    descs = [doc["config"], *doc["layers"]]
    seen: dict[str, int] = {}
    for d in descs:
        seen.setdefault(str(d["digest"]), int(d["size"]))
    lock = threading.Lock()

    def tick(d: str, n: int, size: int) -> None:
        if progress:
            with lock:
                progress(d, n, size)

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        checks = list(
            pool.map(lambda kv: check_blob(client, repo, kv[0], kv[1], tick), seen.items())
        )
    return VerifyReport(client.host, repo, digest, checks)


def check_blob(
    client: RegistryClient, repo: str, digest: str, size: int, tick: Progress | None = None
) -> BlobCheck:
    """Stream one blob from the registry and compare its sha256 and size (nothing stored)."""
    what = f"GET blob {digest} from {repo}"
    sha = hashlib.sha256()
    n = 0
    try:
        with client.stream("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, what=what) as resp:
            if resp.status_code == 404:
                return BlobCheck(digest, size, "missing", "the registry has no such blob")
            if resp.status_code != 200:
                resp.read()
                return BlobCheck(digest, size, "error", f"HTTP {resp.status_code}")
            for chunk in resp.iter_bytes(CHUNK):
                sha.update(chunk)
                n += len(chunk)
                if tick:
                    tick(digest, len(chunk), size)
    except RegistryError as exc:
        if isinstance(exc, RegistryAuthError):
            raise
        return BlobCheck(digest, size, "error", exc.message)
    got = "sha256:" + sha.hexdigest()
    if n != size:
        return BlobCheck(digest, size, "corrupt", f"{n} bytes stored, {size} expected")
    if got != digest:
        return BlobCheck(digest, size, "corrupt", f"stored bytes hash to {got}")
    return BlobCheck(digest, size, "ok")


def repair(report: VerifyReport, layout: OciLayout | None, writer: Any) -> None:
    """Rewrite every bad blob from ``layout`` through ``writer`` (an S3BlobWriter).

    Marks each repaired check; raises a RegistryError naming what could not be
    repaired and the fix (no keys, or no local copy).
    """
    left: list[str] = []
    for b in report.bad:
        if layout is None or not layout.has(b.digest, b.size):
            left.append(f"{b.digest} (no local copy in {layout.root if layout else '-'})")
            continue
        if writer is None:
            left.append(f"{b.digest} (nomad holds no keys for the registry's bucket)")
            continue
        writer.put_blob(report.repository, b.digest, layout.blob_path(b.digest), force=True)
        b.repaired = True
    if left:
        raise RegistryError(
            f"registry {report.registry}: cannot repair {len(left)} blob(s): {'; '.join(left)}",
            hint="delete docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data of each from the "
            "registry's bucket, then push again from a layout that holds them (`nomad build`)",
        )
