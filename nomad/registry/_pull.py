"""Pull a base image from any registry into a local OCI layout (blobs untouched)."""

from __future__ import annotations

import json
import os

from nomad.errors import BuildError
from nomad.registry._client import RegistryClient
from nomad.registry._oci import (
    DOCKER_LIST,
    OCI_INDEX,
    BaseImage,
    Descriptor,
    OciLayout,
    adopt_manifest,
    pick_platform,
    sha256_digest,
)
from nomad.registry._ref import parse_reference

LOOPBACK = ("127.", "localhost", "[::1]")


def base_url_for(host: str, insecure: bool = False) -> str:
    """http:// for loopback (and when asked), https:// everywhere else."""
    return f"{'http' if insecure or host.startswith(LOOPBACK) else 'https'}://{host}"


def pull_image(
    spec: str,
    layout: OciLayout,
    *,
    client: RegistryClient | None = None,
    proxy: str | None = None,
) -> BaseImage:
    """Resolve ``spec`` (manifest lists -> linux/amd64) and copy config + layers into ``layout``."""
    ref = parse_reference(spec)
    own = client is None
    reg = client or RegistryClient(base_url_for(ref.host), proxy=proxy)
    try:
        raw, media = reg.get_manifest(ref.repository, ref.target)
        doc = json.loads(raw)
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
            chosen = pick_platform(doc, spec)
            raw, media = reg.get_manifest(ref.repository, chosen.digest)
            doc = json.loads(raw)

        def fetch(d: Descriptor) -> None:
            if layout.has(d.digest, d.size):
                return
            tmp = layout.blobs / f".{d.digest[7:]}.{os.getpid()}.pull"
            try:
                reg.download_blob(ref.repository, d.digest, tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            layout.adopt(tmp, d.digest)

        base = adopt_manifest(doc, spec, layout, fetch)
        base.digest = sha256_digest(raw)
        return base
    except (ValueError, KeyError) as exc:
        raise BuildError(f"base {spec}: malformed manifest ({exc})") from None
    finally:
        if own:
            reg.close()
