"""Where job outputs go: a stable S3 key per (job, index), so a retry overwrites, never adds.

``outputs/<job id>/<index>.<ext>``: a job retried after its worker died
writes the same keys again, so there is never a second result object.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nomad.storage import Storage

DEFAULT_PREFIX = "outputs/"


def output_key(job_id: str, index: int, ext: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The one key output ``index`` of ``job_id`` is stored under."""
    ext = ext.lstrip(".").lower()
    return f"{prefix.rstrip('/')}/{job_id}/{index}{'.' + ext if ext else ''}"


class OutputStore(Protocol):
    """What workers need from object storage (``S3Outputs`` in production)."""

    def put(self, key: str, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...


class S3Outputs:
    """OutputStore on :class:`nomad.storage.Storage` (boto3 stays inside nomad.storage)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, key: str, data: bytes) -> str:
        ctype = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return self.storage.put_bytes(key, data, content_type=ctype)

    def get(self, key: str) -> bytes:
        return self.storage.get_bytes(key)


class MemoryOutputs:
    """OutputStore in a dict: for tests and benchmarks of workers, where S3 is not the point."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes) -> str:
        self.objects[key] = data
        return key

    def get(self, key: str) -> bytes:
        return self.objects[key]
