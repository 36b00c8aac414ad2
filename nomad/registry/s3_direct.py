"""Write blobs straight into the registry's S3 storage layout (when nomad holds the bucket keys).

The distribution registry serves whatever its layout holds::

    <root>/docker/registry/v2/blobs/sha256/<hh>/<hex>/data                     the bytes
    <root>/docker/registry/v2/repositories/<repo>/_layers/sha256/<hex>/link    "sha256:<hex>"

Its own upload path is one streaming PATCH per blob, then a server-side copy
on commit (every byte is written twice). Writing ``data`` with parallel S3
multipart uploads and then the repository ``link`` skips both; the manifest
still goes through the API, so the registry itself checks that every blob it
names is there. The bytes are hashed before upload: a blob is never stored
under a digest it does not have. Any S3 failure falls back to the API path.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nomad.errors import BuildError

CHUNK = 1 << 20


class S3BlobWriter:
    """Puts blobs into a registry bucket through :class:`nomad.storage.Storage`."""

    def __init__(self, settings: Any, bucket: str | None = None, root: str = "") -> None:
        from nomad.storage import Storage

        self.storage = Storage(settings, bucket or settings.registry_bucket)
        self.root = root.strip("/")
        # Storage.put_file already runs 8 parts in parallel; several blobs at once on top of
        # that overloaded SeaweedFS (connections closed at 4 x 8 x 64 MiB in flight).
        self._one_at_a_time = threading.Semaphore(1)

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.root, "docker/registry/v2", *parts) if p)

    def data_key(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return self._key("blobs/sha256", hexd[:2], hexd, "data")

    def link_key(self, repo: str, digest: str) -> str:
        return self._key("repositories", repo, "_layers/sha256", digest.split(":", 1)[1], "link")

    def put_blob(
        self,
        repo: str,
        digest: str,
        path: Path,
        on_bytes: Callable[[int], None] | None = None,
        *,
        force: bool = False,
    ) -> int:
        """Store the blob (unless the bucket has it) and link it into ``repo``; return bytes sent.

        ``force``: write even when the bucket holds an object under that digest (repairing a
        corrupt copy; the local bytes are hashed first, as always)."""
        sent = 0
        if force or not self.storage.exists(self.data_key(digest)):
            _verify(path, digest)
            with self._one_at_a_time:
                self.storage.put_file(self.data_key(digest), path, progress=on_bytes)
            sent = path.stat().st_size
        self.storage.put_bytes(self.link_key(repo, digest), digest.encode())
        return sent


def _verify(path: Path, digest: str) -> None:
    sha = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            sha.update(view[:n])
    if "sha256:" + sha.hexdigest() != digest:
        raise BuildError(f"{path}: content does not match {digest}", hint="run `nomad build` again")
