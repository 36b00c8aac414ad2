"""Push an OCI layout: for each blob HEAD, else mount, else upload; manifest last.

Blobs go up in parallel. The manifest is written only after every blob it
names is confirmed in the target repository, so the registry never holds a
manifest pointing at missing blobs. A push that stops half-way is resumed by
running it again: blobs that made it are found by HEAD and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.errors import BuildError, StorageError
from nomad.registry._client import RegistryClient
from nomad.registry._mounts import MountIndex
from nomad.registry._oci import Descriptor, OciLayout
from nomad.registry._ref import check_repository, check_tag
from nomad.registry._upload import UploadSessions
from nomad.registry.s3_direct import S3BlobWriter

log = logging.getLogger(__name__)

BlobProgress = Callable[[str, int, int], None]  # (digest, bytes_just_sent, blob_size)


@dataclass
class BlobOutcome:
    """What happened to one blob: ``exists``, ``mounted`` or ``uploaded`` (and bytes sent)."""

    digest: str
    size: int
    action: str
    bytes_sent: int = 0
    source_repo: str | None = None
    via: str = ""  # for uploads: "direct-s3" or "api"


@dataclass
class PushResult:
    """The pushed image: the reference ``nomad up`` uses and what moved."""

    registry: str
    repository: str
    tag: str
    digest: str
    size_bytes: int
    blobs: list[BlobOutcome] = field(default_factory=list)
    path: str = "api"  # what was asked for: "direct-s3" (API as fallback) or "api"

    @property
    def ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.digest}"

    @property
    def bytes_sent(self) -> int:
        return sum(b.bytes_sent for b in self.blobs)

    def count(self, action: str) -> int:
        return sum(1 for b in self.blobs if b.action == action)

    def path_text(self) -> str:
        """Which way the bytes went, for humans: the path asked for and any API fallbacks."""
        if self.path != "direct-s3":
            return "the registry API"
        fell = sum(1 for b in self.blobs if b.via == "api")
        return "direct S3 writes" + (
            f" ({fell} blob(s) fell back to the registry API)" if fell else ""
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "uploaded_via": {
                v: sum(1 for b in self.blobs if b.via == v) for v in ("direct-s3", "api")
            },
            "ref": self.ref,
            "registry": self.registry,
            "repository": self.repository,
            "tag": self.tag,
            "digest": self.digest,
            "size_bytes": self.size_bytes,
            "bytes_sent": self.bytes_sent,
            "blobs": {a: self.count(a) for a in ("exists", "mounted", "uploaded")},
        }


def push_layout(
    client: RegistryClient,
    layout_dir: Path,
    repository: str,
    *,
    tag: str = "latest",
    source_tag: str | None = None,
    parallel: int = 4,
    mounts: MountIndex | None = None,
    progress: BlobProgress | None = None,
    direct: S3BlobWriter | None = None,
    sessions: UploadSessions | None = None,
    chunk: int | None = None,
    mount_from: Sequence[str] = (),
) -> PushResult:
    """Push the image tagged ``source_tag`` in ``layout_dir`` to ``repository:tag``.

    With ``direct``, blobs the registry lacks are written straight into its S3
    layout (falling back to the API on any storage error).
    """
    check_repository(repository)
    check_tag(tag)
    layout = OciLayout(layout_dir)
    man_desc = layout.resolve(source_tag)
    manifest = layout.read_json(man_desc.digest)
    blobs = [
        Descriptor.from_json(manifest["config"]),
        *(Descriptor.from_json(d) for d in manifest["layers"]),
    ]
    for b in blobs:
        _check_local(layout, b)
    mounts = mounts or MountIndex(None)
    pusher = _BlobPusher(client, layout, repository, mounts, progress, direct)
    pusher.sessions, pusher.chunk = sessions, chunk
    # repositories the project pushed to before (nomad.lock): a fresh machine's mount index is
    # empty, but the registry may hold every blob under one of them
    pusher.mount_from = [r for r in mount_from if r != repository]
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        outcomes = list(pool.map(pusher.push, _unique(blobs)))
    body = layout.blob_path(man_desc.digest).read_bytes()
    client.put_manifest(repository, tag, body, man_desc.media_type, man_desc.digest)
    client.verify_image(repository, man_desc.digest, [b.digest for b in blobs])
    return PushResult(
        registry=client.host,
        repository=repository,
        tag=tag,
        digest=man_desc.digest,
        size_bytes=sum(b.size for b in blobs) + len(body),
        blobs=outcomes,
        path="direct-s3" if direct is not None else "api",
    )


def _unique(blobs: list[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for b in blobs:
        seen.setdefault(b.digest, b)
    # biggest first: the long uploads start early and small ones fill the gaps
    return sorted(seen.values(), key=lambda d: -d.size)


def _check_local(layout: OciLayout, d: Descriptor) -> None:
    """Refuse before sending anything when the layout's copy is missing or truncated."""
    path = layout.blob_path(d.digest)
    if not path.is_file():
        raise BuildError(
            f"{layout.root}: blob {d.digest} is missing", hint="run `nomad build` again"
        )
    size = path.stat().st_size
    if size != d.size:
        raise BuildError(
            f"{layout.root}: blob {d.digest} is truncated ({size} of {d.size} bytes)",
            hint="run `nomad build` again to rewrite it",
        )


class _BlobPusher:
    def __init__(
        self,
        client: RegistryClient,
        layout: OciLayout,
        repo: str,
        mounts: MountIndex,
        progress: BlobProgress | None,
        direct: S3BlobWriter | None = None,
    ) -> None:
        self.direct = direct
        self.client = client
        self.layout = layout
        self.repo = repo
        self.mounts = mounts
        self.progress = progress
        self._lock = threading.Lock()
        self.sessions: UploadSessions | None = None
        self.chunk: int | None = None
        self.mount_from: list[str] = []

    def _tick(self, d: Descriptor, n: int) -> None:
        if self.progress:
            with self._lock:
                self.progress(d.digest, n, d.size)

    def push(self, d: Descriptor) -> BlobOutcome:
        reg = self.client.host
        if self.client.has_blob(self.repo, d.digest):
            self.mounts.record(reg, d.digest, self.repo)
            self._tick(d, d.size)
            return BlobOutcome(d.digest, d.size, "exists")
        known = self.mounts.holders(reg, d.digest)
        guesses = [r for r in self.mount_from if r not in known]
        for other in [*known, *guesses]:
            if other == self.repo:
                continue
            if self.client.mount_blob(self.repo, d.digest, other):
                self.mounts.record(reg, d.digest, self.repo)
                self._tick(d, d.size)
                return BlobOutcome(d.digest, d.size, "mounted", source_repo=other)
            if other in known:
                self.mounts.forget(reg, d.digest, other)
        if self.direct is not None:
            outcome = self._direct(d)
            if outcome is not None:
                return outcome
        sent = self.client.upload_blob(
            self.repo,
            d.digest,
            d.size,
            self.layout.blob_path(d.digest),
            on_bytes=lambda n: self._tick(d, n),
            chunk=self.chunk,
            sessions=self.sessions,
        )
        self.mounts.record(reg, d.digest, self.repo)
        return BlobOutcome(d.digest, d.size, "uploaded", bytes_sent=sent, via="api")

    def _direct(self, d: Descriptor) -> BlobOutcome | None:
        """Write through S3; None means 'use the API instead' (storage refused or registry blind)."""
        assert self.direct is not None
        try:
            sent = self.direct.put_blob(
                self.repo, d.digest, self.layout.blob_path(d.digest), lambda n: self._tick(d, n)
            )
        except StorageError as exc:
            log.warning("direct S3 write of %s failed (%s); using the registry API", d.digest, exc)
            return None
        if not self.client.has_blob(self.repo, d.digest):
            log.warning("registry does not see %s written to S3; using the registry API", d.digest)
            return None
        self.mounts.record(self.client.host, d.digest, self.repo)
        if sent == 0:  # the bucket already held the bytes: only the repository link was written
            return BlobOutcome(d.digest, d.size, "mounted", source_repo="(s3 layout)")
        return BlobOutcome(d.digest, d.size, "uploaded", bytes_sent=sent, via="direct-s3")
