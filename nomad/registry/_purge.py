"""Remove abandoned registry uploads from its S3 bucket, safely.

distribution's own purger (``storage.maintenance.uploadpurging``) panics on
the directory-marker keys (ending in ``/``) that SeaweedFS lists after an
interrupted upload, and then the registry is down until restarted. nomad
turns that purger off and does the job itself: group the keys under
``repositories/<repo>/_uploads/<id>/``, read each upload's ``startedat``, and
delete uploads older than the cut-off (plus their unfinished S3 multipart
uploads, which otherwise cost storage forever). Uploads younger than the
cut-off are kept, so a push interrupted an hour ago still resumes mid-blob.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nomad.errors import StorageError

PREFIX = "docker/registry/v2/repositories/"
DEFAULT_MAX_AGE = 7 * 24 * 3600.0  # distribution's own default (168h)
_UPLOAD = re.compile(r"^(?P<dir>.+/_uploads/(?P<id>[^/]+))(?:/|$)")


@dataclass
class PurgeReport:
    """What a purge found and did."""

    removed: list[str] = field(default_factory=list)  # upload dirs deleted
    kept: int = 0
    keys_deleted: int = 0
    multipart_aborted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "kept": self.kept,
            "keys_deleted": self.keys_deleted,
            "multipart_aborted": self.multipart_aborted,
        }


def started_at(text: str) -> float | None:
    """Parse the registry's ``startedat`` (Go RFC 3339, nanoseconds); None when unreadable."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not m:
        return None
    stamp = m.group(1) + ("+00:00" if m.group(2) == "Z" else m.group(2))
    return datetime.fromisoformat(stamp).timestamp()


def purge_uploads(
    store: Any,
    *,
    older_than: float = DEFAULT_MAX_AGE,
    now: float | None = None,
    dry_run: bool = False,
    root: str = "",
) -> PurgeReport:
    """Delete uploads started more than ``older_than`` seconds ago (``store``: a Storage)."""
    from nomad.storage import ObjectNotFound

    now = time.time() if now is None else now
    prefix = (root.strip("/") + "/" if root.strip("/") else "") + PREFIX
    groups: dict[str, list[str]] = {}
    for key in store.list(prefix):
        m = _UPLOAD.match(key)
        if m:
            groups.setdefault(m.group("dir"), []).append(key)
    report = PurgeReport()
    for upload_dir, keys in sorted(groups.items()):
        try:
            began = started_at(store.get_bytes(f"{upload_dir}/startedat").decode(errors="replace"))
        except ObjectNotFound:
            began = None  # a half-created or half-deleted upload: nothing can resume it
        if began is not None and now - began < older_than:
            report.kept += 1
            continue
        report.removed.append(upload_dir)
        if dry_run:
            continue
        report.multipart_aborted += _abort_multipart(store, f"{upload_dir}/")
        for key in keys:
            store.delete(key)
            report.keys_deleted += 1
    return report


def _abort_multipart(store: Any, prefix: str) -> int:
    """Abort unfinished S3 multipart uploads under ``prefix`` (the registry's ``data`` writer)."""
    from nomad.storage import translate_error

    n = 0
    try:
        pages = store.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=store.bucket, Prefix=prefix
        )
        for page in pages:
            for up in page.get("Uploads", []):
                store.client.abort_multipart_upload(
                    Bucket=store.bucket, Key=up["Key"], UploadId=up["UploadId"]
                )
                n += 1
    except Exception as exc:
        err: StorageError = translate_error(
            exc,
            action="abort multipart uploads under",
            bucket=store.bucket,
            key=prefix,
            endpoint=store.settings.endpoint_url,
        )
        raise err from exc
    return n
