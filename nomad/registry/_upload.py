"""Chunked, resumable blob uploads over the distribution API.

A blob goes up as a series of ``PATCH`` requests of ``chunk`` bytes each; after
every chunk the registry answers with a new upload ``Location`` (its signed
upload state) and the ``Range`` it holds. nomad remembers the last
acknowledged location per (registry, repository, digest) in a small JSON file,
so a push that dies half-way through a 20 GB blob resumes at the last chunk
the registry confirmed instead of byte 0.

Why the chunk size matters (distribution 2.8 on its S3 driver): the driver
buffers one ``chunksize`` of a PATCH in memory and writes S3 multipart parts as
it fills; a PATCH cut half-way leaves no part behind only when it is no longer
than that buffer, and a resumed upload whose S3 parts do not add up to the
acknowledged offset is cancelled by the registry. So chunks are the driver's
``chunksize`` (16 MiB in the configs nomad writes), and bigger only when S3's
10,000-part limit demands it (``chunk >= size / 10,000``).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
DRIVER_CHUNK = 16 * MiB  # storage.s3.chunksize in the configs nomad writes
S3_MAX_PARTS = 10_000
_PART_HEADROOM = 9_000  # stay clear of the limit (the registry may split the tail)


def chunk_size_for(size: int, base: int = DRIVER_CHUNK) -> int:
    """The PATCH size for a blob: ``base``, or the smallest multiple of it that keeps the
    upload under S3's part limit (every PATCH becomes at least one S3 part)."""
    need = -(-size // _PART_HEADROOM)  # ceil
    return max(base, -(-need // base) * base)


class UploadSessions:
    """``{registry/repo@digest: {"location": …, "offset": N}}`` in a JSON file; thread-safe.

    The location carries the registry's HMAC-signed upload state, not a credential.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            s = self._load().get(key)
        if isinstance(s, dict) and isinstance(s.get("location"), str):
            return s["location"], int(s.get("offset", 0))
        return None

    def put(self, key: str, location: str, offset: int) -> None:
        self._update(key, {"location": location, "offset": offset})

    def drop(self, key: str) -> None:
        self._update(key, None)

    def _update(self, key: str, value: dict[str, Any] | None) -> None:
        if self.path is None:
            return
        with self._lock:
            data = self._load()
            if value is None:
                if data.pop(key, None) is None:
                    return
            else:
                data[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)


def parse_range(header: str | None) -> int | None:
    """``Range: 0-N`` from an upload response -> bytes held (N+1); ``0-0`` and none -> 0."""
    if not header:
        return None
    _, _, end = header.partition("-")
    try:
        last = int(end)
    except ValueError:
        return None
    return last + 1 if last > 0 else 0
