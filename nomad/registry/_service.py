"""The push every front end uses: settings -> client -> push_layout -> last_push.json."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from nomad.errors import RegistryError, UsageError
from nomad.registry._client import RegistryClient
from nomad.registry._mounts import MountIndex
from nomad.registry._oci import OciLayout
from nomad.registry._pull import base_url_for
from nomad.registry._push import PushResult, push_layout
from nomad.registry._ref import parse_reference
from nomad.registry._state import record_push
from nomad.registry._upload import UploadSessions
from nomad.registry._verify import VerifyReport, check_blob, repair, verify_image


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


def direct_s3_for(requested: bool | None, target_url: str, configured_url: str, s3: Any) -> Any:
    """The S3 settings to write blobs with, or None for the registry API.

    nomad holds the keys of *one* bucket: the configured registry's. Direct writes
    are possible only when the push goes to that registry (a REF may still change
    the repository and tag). ``requested`` None means "when possible"; True is a
    promise the user asked for, so an impossible one is a usage error, never a
    silent switch to the API.
    """
    if requested is False:
        return None
    same = _origin(target_url) == _origin(configured_url)
    if requested is None:
        return s3 if same else None
    if s3 is None:
        raise UsageError(
            "--direct-s3 needs the registry bucket's keys",
            hint="set storage.* keys and registry.direct_s3: true in nomad.yaml, or use --api",
        )
    if not same:
        raise UsageError(
            f"--direct-s3: {_origin(target_url)} is not the configured registry "
            f"{_origin(configured_url)}, whose bucket nomad holds the keys of",
            hint="drop the registry host from REF (REPO[:TAG] pushes to the configured one), "
            "or use --api",
        )
    return s3


def _origin(url: str) -> str:
    u = httpx.URL(url)
    return f"{u.host}:{u.port or (443 if u.scheme == 'https' else 80)}"


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
    chunk: int | None = None,
    mount_from: Sequence[str] = (),
    project: str | None = None,
    config_path: Path | None = None,
    proxy: str | None = None,
) -> PushResult:
    """Push and record the result for `nomad up` (per project: see ``_state``).

    ``direct_s3``: the registry bucket's S3Settings, to write blobs straight into its layout
    (through ``direct_s3.proxy`` when the s3 leg has one). ``proxy``: the registry leg's
    SOCKS5h proxy (``RegistrySettings.proxy_to``); None is direct.
    """
    from nomad.registry.s3_direct import S3BlobWriter

    mounts = MountIndex(Path(data_dir) / "registry" / "mounts.json")
    with RegistryClient(
        url,
        username=username,
        password=password,
        verify=not insecure,
        transport=transport,
        proxy=proxy,
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
            sessions=UploadSessions(Path(data_dir) / "registry" / "uploads.json"),
            chunk=chunk,
            mount_from=mount_from,
        )
    record_push(data_dir, result.to_json(), project=project, config_path=config_path)
    return result


def summary(result: PushResult) -> dict[str, Any]:
    """What the CLI prints with --json."""
    return result.to_json()


def verify_pushed(
    *,
    url: str,
    repository: str,
    reference: str,
    username: str | None = None,
    password: str | None = None,
    insecure: bool = False,
    parallel: int = 4,
    progress: Callable[[str, int, int], None] | None = None,
    repair_from: Path | None = None,
    s3: Any = None,
    transport: httpx.BaseTransport | None = None,
    proxy: str | None = None,
) -> VerifyReport:
    """Read back and hash every blob of ``repository:reference``; with ``repair_from`` (an OCI
    layout) rewrite corrupt blobs through the registry bucket (``s3``) and check them again."""
    from nomad.registry.s3_direct import S3BlobWriter

    with RegistryClient(
        url,
        username=username,
        password=password,
        verify=not insecure,
        transport=transport,
        proxy=proxy,
    ) as client:
        report = verify_image(client, repository, reference, parallel=parallel, progress=progress)
        if repair_from is None or not report.bad:
            return report
        layout = OciLayout(repair_from)
        repair(report, layout if layout.exists() else None, S3BlobWriter(s3) if s3 else None)
        for b in report.blobs:
            if b.repaired:
                again = check_blob(client, repository, b.digest, b.size)
                if again.status != "ok":
                    b.repaired, b.detail = (
                        False,
                        f"still {again.status} after repair: {again.detail}",
                    )
    return report


def require_ok(report: VerifyReport) -> None:
    """Raise a RegistryError naming every blob that is still bad (exit 4)."""
    if not report.bad:
        return
    names = "; ".join(f"{b.digest} {b.status} ({b.detail})" for b in report.bad)
    raise RegistryError(
        f"registry {report.registry}: {len(report.bad)} bad blob(s) in "
        f"{report.repository}@{report.digest}: {names}",
        hint="`nomad registry verify --repair` rewrites them from the local layout "
        "(needs the registry bucket's keys)",
    )
