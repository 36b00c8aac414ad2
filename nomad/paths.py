"""Where nomad keeps things on this machine.

Data dir (embedded stack, SQLite queue, cluster state): ``--data-dir``, then
``$NOMAD_DATA_DIR``, then ``$XDG_DATA_HOME/nomad``, then ``~/.local/share/nomad``.
Cache dir (model weights, content-addressed): ``$NOMAD_CACHE_DIR``, then
``$XDG_CACHE_HOME/nomad``, then ``~/.cache/nomad``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data dir, created with mode 0700 on first use."""
    if explicit:
        p = Path(explicit)
    elif os.environ.get("NOMAD_DATA_DIR"):
        p = Path(os.environ["NOMAD_DATA_DIR"])
    else:
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        p = Path(base) / "nomad"
    p.mkdir(parents=True, exist_ok=True, mode=0o700)
    return p


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The model cache dir, created on first use."""
    if explicit:
        p = Path(explicit)
    elif os.environ.get("NOMAD_CACHE_DIR"):
        p = Path(os.environ["NOMAD_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        p = Path(base) / "nomad"
    p.mkdir(parents=True, exist_ok=True)
    return p

