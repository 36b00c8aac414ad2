"""Which repository on which registry already holds which blob.

HEAD on a blob is per repository, so a weight pushed to ``team/a`` still
404s under ``team/b``. Remembering where each digest lives lets a push ask
for a cross-repository mount (no bytes move) instead of uploading again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class MountIndex:
    """A small JSON file: {registry: {digest: [repo, …]}}; safe across threads."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, list[str]]] = self._load()

    def _load(self) -> dict[str, dict[str, list[str]]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def holders(self, registry: str, digest: str) -> list[str]:
        with self._lock:
            return list(self._data.get(registry, {}).get(digest, []))

    def record(self, registry: str, digest: str, repo: str) -> None:
        with self._lock:
            repos = self._data.setdefault(registry, {}).setdefault(digest, [])
            if repo in repos:
                return
            repos.insert(0, repo)
            del repos[8:]
            self._save()

    def forget(self, registry: str, digest: str, repo: str) -> None:
        with self._lock:
            repos = self._data.get(registry, {}).get(digest, [])
            if repo in repos:
                repos.remove(repo)
                self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(self._data, sort_keys=True))
        os.replace(tmp, self.path)
