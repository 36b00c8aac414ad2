"""The node's weight cache: one file per weight layer digest, a size limit, LRU eviction.

Layout under ``root``::

    weights/<hex>            the weight file of layer sha256:<hex> (complete, verified)
    partial/<hex>            a fetch in progress (the file, written at its offsets)
    partial/<hex>.state      its resume record
    partial/<hex>.lock       held while a process fetches that digest
    index.json               {hex: {"size", "last_used", "path"}} — sizes and recency
    .lock                    held while index.json or the eviction changes

Keyed by the *layer* digest: the same weight in two images, or in two tags of
one image, is one file. A file enters ``weights/`` only after its digest
checked out, so anything there is trusted without re-hashing (a second wake
moves 0 bytes and reads nothing). Eviction removes least-recently-used
entries that the current pull does not need, until the new bytes fit.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nomad.errors import ModelFetchError


@dataclass(frozen=True)
class CacheEntry:
    """One cached weight file."""

    digest: str
    size: int
    last_used: float
    path: str  # the file's path inside the image (for `nomad node cache ls`)


def _hex(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise ModelFetchError(f"unsupported digest {digest!r}")
    return hexd


class NodeCache:
    """A digest-keyed weight cache with a byte limit (None = unlimited)."""

    def __init__(
        self, root: Path, max_bytes: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.clock = clock
        for d in (self.root / "weights", self.root / "partial"):
            d.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------
    def file(self, digest: str) -> Path:
        return self.root / "weights" / _hex(digest)

    def part(self, digest: str) -> Path:
        return self.root / "partial" / _hex(digest)

    def state(self, digest: str) -> Path:
        return self.root / "partial" / f"{_hex(digest)}.state"

    # -- locking -------------------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, path: Path) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """The index/eviction lock (short critical sections only)."""
        return self._flock(self.root / ".lock")

    def fetching(self, digest: str) -> contextlib.AbstractContextManager[None]:
        """Held while one process fetches ``digest`` (a second pull of it waits, then finds it)."""
        return self._flock(self.root / "partial" / f"{_hex(digest)}.lock")

    # -- index ---------------------------------------------------------------------
    def _read(self) -> dict[str, dict[str, object]]:
        try:
            doc = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError):
            doc = {}
        return doc if isinstance(doc, dict) else {}

    def _write(self, doc: dict[str, dict[str, object]]) -> None:
        tmp = self.root / f".index.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, self.root / "index.json")

    def entries(self) -> list[CacheEntry]:
        """Complete entries, least recently used first (files missing on disk are skipped)."""
        out = []
        for hexd, meta in self._read().items():
            p = self.root / "weights" / hexd
            if p.is_file():
                out.append(
                    CacheEntry(
                        f"sha256:{hexd}",
                        int(str(meta.get("size", p.stat().st_size))),
                        float(str(meta.get("last_used", 0))),
                        str(meta.get("path", "")),
                    )
                )
        return sorted(out, key=lambda e: (e.last_used, e.digest))

    def used_bytes(self) -> int:
        """Bytes of complete entries plus partial files (both take disk)."""
        done = sum(e.size for e in self.entries())
        parts = sum(p.stat().st_size for p in (self.root / "partial").iterdir() if p.name.isalnum())
        return done + parts

    def has(self, digest: str, size: int | None = None) -> bool:
        p = self.file(digest)
        return p.is_file() and (size is None or p.stat().st_size == size)

    def touch(self, digests: Iterable[str]) -> None:
        """Mark entries as used now (they are what the node runs)."""
        now = self.clock()
        with self.locked():
            doc = self._read()
            for d in digests:
                if _hex(d) in doc:
                    doc[_hex(d)]["last_used"] = now
            self._write(doc)

    def add(self, digest: str, part: Path, path: str) -> Path:
        """Move a verified partial file into the cache under its layer digest."""
        dest = self.file(digest)
        with self.locked():
            os.replace(part, dest)
            doc = self._read()
            doc[_hex(digest)] = {
                "size": dest.stat().st_size,
                "last_used": self.clock(),
                "path": path,
            }
            self._write(doc)
        return dest

    def make_room(self, need: int, keep: Iterable[str]) -> list[CacheEntry]:
        """Evict LRU entries not in ``keep`` until ``need`` more bytes fit; return what went.

        Raises when even an empty cache (minus ``keep``) cannot hold them: the
        limit is too small for this image, and nothing was deleted.
        """
        if self.max_bytes is None:
            return []
        keep_hex = {_hex(d) for d in keep}
        with self.locked():
            entries = self.entries()
            used = self.used_bytes()
            removable = [e for e in entries if _hex(e.digest) not in keep_hex]
            if used - sum(e.size for e in removable) + need > self.max_bytes:
                raise ModelFetchError(
                    f"node cache {self.root}: the image needs {need} more bytes but the limit is "
                    f"{self.max_bytes} bytes ({used} in use)",
                    hint="raise the limit (--cache-limit / node.cache_max_gb) or free disk",
                )
            gone = []
            doc = self._read()
            for e in removable:
                if used + need <= self.max_bytes:
                    break
                self.file(e.digest).unlink(missing_ok=True)
                doc.pop(_hex(e.digest), None)
                used -= e.size
                gone.append(e)
            self._write(doc)
        return gone

    def remove(self, digest: str) -> None:
        with self.locked():
            self.file(digest).unlink(missing_ok=True)
            doc = self._read()
            doc.pop(_hex(digest), None)
            self._write(doc)
