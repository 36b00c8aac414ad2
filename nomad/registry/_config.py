"""The CNCF distribution registry's config for an S3 bucket (Tigris, R2, AWS, MinIO, SeaweedFS).

Keys stay out of printed configs: the registry reads them from
``REGISTRY_STORAGE_S3_ACCESSKEY`` / ``REGISTRY_STORAGE_S3_SECRETKEY``. Only a
file written with mode 0600 may carry them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nomad.errors import UsageError

PROVIDERS: dict[str, dict[str, str | None]] = {
    "aws": {"endpoint": None, "region": "us-east-1"},
    "tigris": {"endpoint": "https://fly.storage.tigris.dev", "region": "auto"},
    "r2": {"endpoint": "https://ACCOUNT_ID.r2.cloudflarestorage.com", "region": "auto"},
    "minio": {"endpoint": "http://127.0.0.1:9000", "region": "us-east-1"},
    "seaweedfs": {"endpoint": "http://127.0.0.1:8333", "region": "us-east-1"},
}


def distribution_config(
    *,
    bucket: str,
    endpoint: str | None,
    region: str,
    listen: str = "127.0.0.1:5000",
    access_key: str | None = None,
    secret_key: str | None = None,
    redirect: bool | None = None,
) -> dict[str, Any]:
    """A working distribution config on the S3 driver.

    ``redirect``: blob GETs are answered with a 307 to a presigned S3 URL, so
    every client (``docker pull``, ``nomad node pull``) reads the bytes
    straight from S3 instead of through the registry. Clients must reach the
    S3 endpoint (no keys needed), so the default is on for an https endpoint
    (AWS, R2, Tigris) and off for a plain-http one (usually loopback/private).
    """
    if not bucket:
        raise UsageError("registry config: a bucket name is required (--bucket)")
    s3: dict[str, Any] = {
        "bucket": bucket,
        "region": region,
        "v4auth": True,
        "secure": not (endpoint or "https").startswith("http://"),
    }
    if endpoint:
        s3["regionendpoint"] = endpoint
        s3["forcepathstyle"] = True
    if access_key and secret_key:
        s3["accesskey"] = access_key
        s3["secretkey"] = secret_key
    return {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "http": {"addr": listen},
        "storage": storage_section(s3, redirect=s3["secure"] if redirect is None else redirect),
        "health": HEALTH,
    }


# distribution's S3 driver, tuned for multi-GB blobs (see docs/images.md "Large blobs"):
# - chunksize 16 MiB: the PATCH size nomad sends (a cut PATCH leaves no S3 part behind, so
#   uploads resume mid-blob) and 16 MiB x 10,000 parts = 156 GiB per blob;
# - the commit of an upload is a server-side multipart copy: distribution's default of 100
#   concurrent 32 MiB part copies timed out inside SeaweedFS for a 6 GiB blob; 4 x 128 MiB
#   copies finish (and 128 MiB x 10,000 parts covers 1.2 TiB).
S3_TUNING: dict[str, Any] = {
    "chunksize": 16 * 1024 * 1024,
    "multipartcopythresholdsize": 128 * 1024 * 1024,
    "multipartcopychunksize": 128 * 1024 * 1024,
    "multipartcopymaxconcurrency": 4,
}
# The built-in upload purger panics (index out of range in purgeuploads.go) when an
# interrupted upload left S3 keys ending in '/' (SeaweedFS lists those): it is off, and
# `nomad registry purge-uploads` (run by `nomad dev up`) removes stale uploads safely.
MAINTENANCE: dict[str, Any] = {"uploadpurging": {"enabled": False}}
# /v2/ answers 503 when the registry cannot reach its storage, so health checks see S3 too.
HEALTH: dict[str, Any] = {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}}


def storage_section(s3: dict[str, Any], *, redirect: bool = False) -> dict[str, Any]:
    """The ``storage:`` block: S3 (tuned), deletes on, purger off; ``redirect``: blob GETs
    answered with a 307 to a presigned S3 URL (clients read straight from S3)."""
    return {
        "s3": {**s3, **S3_TUNING},
        "redirect": {"disable": not redirect},
        "delete": {"enabled": True},
        "maintenance": MAINTENANCE,
    }


def provider_defaults(provider: str) -> dict[str, str | None]:
    """Endpoint and region presets for a named provider."""
    if provider not in PROVIDERS:
        raise UsageError(
            f"unknown S3 provider {provider!r}", hint=f"one of: {', '.join(PROVIDERS)}"
        )
    return {k: v for k, v in PROVIDERS[provider].items()}


def distribution_yaml(cfg: dict[str, Any]) -> str:
    """YAML text of a config (for printing or writing)."""
    import yaml

    text: str = yaml.safe_dump(cfg, sort_keys=False)
    return text


def write_private(path: Path, text: str) -> None:
    """Write a file that may hold keys: 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def validate_config(cfg: Any) -> list[str]:
    """Problems in a distribution config dict (empty list = looks right)."""
    problems: list[str] = []
    s3 = ((cfg or {}).get("storage") or {}).get("s3") if isinstance(cfg, dict) else None
    if not isinstance(s3, dict):
        return ["storage.s3 is missing: the registry would not use S3"]
    for key in ("bucket", "region"):
        if not s3.get(key):
            problems.append(f"storage.s3.{key} is empty")
    redirect_on = not ((cfg.get("storage") or {}).get("redirect") or {}).get("disable")
    endpoint = str(s3.get("regionendpoint", ""))
    if redirect_on and endpoint.startswith(("http://127.", "http://localhost")):
        problems.append(
            f"storage.redirect is on but clients elsewhere cannot reach {endpoint}: "
            "set storage.redirect.disable: true, or use an endpoint nodes can reach"
        )
    if s3.get("regionendpoint", "").startswith("http://") and s3.get("secure", True):
        problems.append("storage.s3.secure must be false for an http:// regionendpoint")
    return problems


def dumps(cfg: dict[str, Any]) -> str:
    return json.dumps(cfg, indent=2)
