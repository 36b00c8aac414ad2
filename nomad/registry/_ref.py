"""Image references: ``[REGISTRY/]REPO[:TAG][@DIGEST]`` with Docker Hub defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nomad.errors import UsageError

DOCKER_HUB = "registry-1.docker.io"
_REPO = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``host`` is what the HTTP API talks to."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def target(self) -> str:
        """What to GET under /manifests/: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        s = f"{self.host}/{self.repository}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def check_repository(repo: str) -> str:
    """Validate a repository name (lowercase path components), naming it in the error."""
    if not _REPO.match(repo):
        raise UsageError(
            f"invalid repository name {repo!r}",
            hint="use lowercase letters, digits, '.', '_', '-', '/'",
        )
    return repo


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise UsageError(
            f"invalid tag {tag!r}", hint="tags are [A-Za-z0-9_.-], at most 128 characters"
        )
    return tag


def parse_reference(ref: str) -> Reference:
    """Parse ``ghcr.io/org/img:tag``, ``ubuntu``, ``127.0.0.1:5000/x@sha256:…`` and friends."""
    rest, _, digest = ref.partition("@")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
    else:
        host, path = DOCKER_HUB, rest
    if host in ("docker.io", "index.docker.io"):
        host = DOCKER_HUB
    name, colon, tag = path.rpartition(":")
    if not colon or "/" in tag:
        name, tag = path, ""
    if host == DOCKER_HUB and "/" not in name:
        name = f"library/{name}"
    check_repository(name)
    if tag:
        check_tag(tag)
    if digest and not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        raise UsageError(f"invalid digest in {ref!r}")
    return Reference(host, name, tag or None, digest or None)
