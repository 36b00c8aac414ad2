"""Where a node reads a blob's bytes from: a URL plus headers, refreshable.

Two ways, one shape (:class:`Target`), so the byte path is the same code:

* :class:`RegistrySource` asks the registry for the blob without following
  redirects. A registry whose storage has ``redirect`` enabled answers 307
  with a presigned S3 URL; we then read straight from S3 (no registry in the
  byte path, no credentials sent to S3). Otherwise we read from the registry
  with its auth header.
* :class:`S3Source` presigns the registry's own blob object
  (``docker/registry/v2/blobs/sha256/xx/<hex>/data``) with read-only keys.

A presigned URL expires; the fetcher calls :meth:`locate` again on 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import httpx

from nomad.errors import RegistryError

if TYPE_CHECKING:
    from nomad.registry import RegistryClient
    from nomad.storage import Storage

_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Target:
    """One readable URL for a blob; ``where`` names it in messages (no signature, no keys)."""

    url: str
    where: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    via: str = "registry"  # "registry" | "registry→s3" | "s3"


class BlobSource(Protocol):
    """Gives a fresh :class:`Target` for a blob (called again when a URL expires)."""

    name: str

    def locate(self, digest: str) -> Target: ...


def _public(url: str) -> str:
    u = httpx.URL(url)
    return str(u.copy_with(query=None, username=None, password=None))


class RegistrySource:
    """Blobs of one repository, through the registry (and its S3 redirect when it has one)."""

    def __init__(self, client: RegistryClient, repo: str) -> None:
        self.client = client
        self.repo = repo
        self.name = f"{client.host}/{repo}"
        self.proxy: str | None = client.proxy  # blob ranges take the registry client's route

    def locate(self, digest: str) -> Target:
        path = f"/v2/{self.repo}/blobs/{digest}"
        what = f"GET blob {digest} from {self.repo}"
        resp = self.client.request(
            "GET",
            path,
            repo=self.repo,
            what=what,
            headers={"Range": "bytes=0-0"},
            follow_redirects=False,
        )
        if resp.status_code in _REDIRECTS and resp.headers.get("location"):
            loc = str(httpx.URL(self.client.base_url + path).join(resp.headers["location"]))
            if self.client.is_registry_url(loc):  # a redirect within the registry itself
                return Target(loc, f"{self.name}@{digest}", self.client.auth_headers(self.repo))
            return Target(
                loc, f"{_public(loc)} (redirected by {self.client.host})", via="registry→s3"
            )
        if resp.status_code in (200, 206):
            return Target(
                self.client.base_url + path,
                f"{self.name}@{digest}",
                self.client.auth_headers(self.repo),
            )
        if resp.status_code == 404:
            raise RegistryError(
                f"registry {self.client.host}: no blob {digest} in {self.repo}",
                hint="push the image again (`nomad push`)",
            )
        raise RegistryError(f"registry {self.client.host}: {what} failed: HTTP {resp.status_code}")


class S3Source:
    """Blobs straight from the registry's bucket, presigned with (read-only) keys."""

    def __init__(self, storage: Storage, root: str = "", seconds: int = 3600) -> None:
        self.storage = storage
        self.root = root.strip("/")
        self.seconds = seconds
        self.name = f"s3://{storage.bucket}"
        self.proxy: str | None = storage.settings.proxy  # presigned GETs: the s3 leg's route

    def key(self, digest: str) -> str:
        hexd = digest.split(":", 1)[1]
        return "/".join(
            p for p in (self.root, "docker/registry/v2/blobs/sha256", hexd[:2], hexd, "data") if p
        )

    def locate(self, digest: str) -> Target:
        key = self.key(digest)
        return Target(
            self.storage.presign(key, self.seconds), f"s3://{self.storage.bucket}/{key}", via="s3"
        )
