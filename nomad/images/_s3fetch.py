"""``s3://bucket/key`` model sources, read through :mod:`nomad.storage` (the one boto3 module)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nomad.errors import ModelFetchError, StorageError


def download_s3(
    source: str, part: Path, sha: Any, tick: Callable[[int], None], *, what: str, settings: Any
) -> None:
    """Download the object to ``part`` and hash it; errors name the model."""
    from nomad.storage import Storage

    parts = urlsplit(source)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise ModelFetchError(f"model {what}: {source!r} is not s3://BUCKET/KEY")
    if settings is None:
        raise ModelFetchError(
            f"model {what}: {source} needs S3 credentials",
            hint="set storage.endpoint_url and keys in nomad.yaml, or run `nomad dev up`",
        )
    try:
        Storage(settings, bucket).get_file(key, part)
    except StorageError as exc:
        raise ModelFetchError(
            f"model {what}: cannot download {source}: {exc.message}", hint=exc.hint
        ) from exc
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(part, "rb") as f:
        while n := f.readinto(buf):
            sha.update(view[:n])
            tick(n)
