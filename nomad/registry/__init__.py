"""Registry: an OCI distribution client over httpx, push with HEAD/mount/upload, base pulls.

Public API::

    RegistryClient(url, username=, password=, transport=)   the HTTP seam (injectable transport)
    push_layout(client, layout_dir, repo, tag=, parallel=)  -> PushResult
    pull_image(spec, layout)                                -> BaseImage (base import)
    MountIndex(path)                                        which repo holds which digest
    distribution_config(...)                                the registry's S3 storage config
    verify_pushed(url=, repository=, reference=, ...)       -> VerifyReport (read back + sha256)
    purge_uploads(storage, older_than=)                     -> PurgeReport (safe upload purge)
    chunk_size_for(size)                                    PATCH chunk fitted to S3 part limits
"""

from __future__ import annotations

from nomad.registry._client import (
    BlobUploadError,
    RegistryAuthError,
    RegistryClient,
    RegistryUnreachable,
)
from nomad.registry._config import distribution_config, distribution_yaml
from nomad.registry._mounts import MountIndex
from nomad.registry._pull import base_url_for, pull_image
from nomad.registry._purge import PurgeReport, purge_uploads
from nomad.registry._push import BlobOutcome, PushResult, push_layout
from nomad.registry._ref import Reference, parse_reference
from nomad.registry._service import push_image, target_for, verify_pushed
from nomad.registry._upload import UploadSessions, chunk_size_for
from nomad.registry._verify import BlobCheck, VerifyReport

__all__ = [
    "BlobCheck",
    "BlobOutcome",
    "BlobUploadError",
    "MountIndex",
    "PurgeReport",
    "PushResult",
    "Reference",
    "RegistryAuthError",
    "RegistryClient",
    "RegistryUnreachable",
    "UploadSessions",
    "VerifyReport",
    "base_url_for",
    "chunk_size_for",
    "distribution_config",
    "distribution_yaml",
    "parse_reference",
    "pull_image",
    "purge_uploads",
    "push_image",
    "push_layout",
    "target_for",
    "verify_pushed",
]
