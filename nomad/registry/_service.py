"""The push every front end uses: settings -> client -> push_layout -> last_push.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from nomad.registry._client import RegistryClient
from nomad.registry._mounts import MountIndex
from nomad.registry._pull import base_url_for
from nomad.registry._push import PushResult, push_layout
from nomad.registry._ref import parse_reference
from nomad.registry._state import record_push


def target_for(ref: str | None, url: str, repository: str, tag: str) -> tuple[str, str, str]:
    """(base_url, repository, tag): an explicit ``[REGISTRY/]REPO[:TAG]`` overrides the config."""
    if not ref:
        return url, repository, tag
    if "/" in ref and ("." in ref.split("/")[0] or ":" in ref.split("/")[0]):
        parsed = parse_reference(ref)
        scheme = httpx.URL(url).scheme if httpx.URL(url).host in parsed.host else None
        base = f"{scheme}://{parsed.host}" if scheme else base_url_for(parsed.host)
        return base, parsed.repository, parsed.tag or tag
    name, _, t = ref.partition(":")
    return url, name, t or tag


def push_image(
    *,
    url: str,
    repository: str,
    tag: str,
    layout_dir: Path,
    data_dir: Path,
    username: str | None = None,
    password: str | None = None,
    insecure: bool = False,
    parallel: int = 4,
    source_tag: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    direct_s3: Any = None,
) -> PushResult:
    """Push and record the result for `nomad up` (data_dir/images/last_push.json).

    ``direct_s3``: the registry bucket's S3Settings, to write blobs straight into its layout.
    """
    from nomad.registry.s3_direct import S3BlobWriter

    mounts = MountIndex(Path(data_dir) / "registry" / "mounts.json")
    with RegistryClient(
        url, username=username, password=password, verify=not insecure, transport=transport
    ) as client:
        result = push_layout(
            client,
            layout_dir,
            repository,
            tag=tag,
            source_tag=source_tag,
            parallel=parallel,
            mounts=mounts,
            progress=progress,
            direct=S3BlobWriter(direct_s3) if direct_s3 is not None else None,
        )
    record_push(data_dir, result.to_json())
    return result


def summary(result: PushResult) -> dict[str, Any]:
    """What the CLI prints with --json."""
    return result.to_json()
