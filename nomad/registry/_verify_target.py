"""Which image `nomad registry verify` reads: a REF, else the last push, else the config's."""

from __future__ import annotations

from pathlib import Path

import httpx

from nomad.registry._service import target_for
from nomad.registry._state import last_pushed


def verify_target(
    ref: str | None, url: str, repository: str, tag: str, data_dir: Path
) -> tuple[str, str, str]:
    """(base_url, repository, tag-or-digest) for a verify run."""
    if ref:
        name, _, digest = ref.partition("@")
        base, repo, t = target_for(name, url, repository, tag)
        return base, repo, digest or t
    last = last_pushed(data_dir)
    host = httpx.URL(url).netloc.decode()
    if last and last.get("digest") and last.get("registry") == host:
        return url, str(last["repository"]), str(last["digest"])
    return url, repository, tag
