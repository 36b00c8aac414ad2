"""A full disk is one clear line: what was being written, how much is free, what to delete.

``nomad build`` writes weights into the model cache and layers into the OCI
layout; both can be tens of GB. Without this, ENOSPC surfaced as a 51-line
traceback ending in ``OSError: [Errno 28]``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from nomad.errors import BuildError

FULL = {errno.ENOSPC, errno.EDQUOT}


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def disk_full_error(exc: OSError, action: str, places: dict[str, Path]) -> BuildError:
    """The error for ENOSPC/EDQUOT while ``action``; ``places`` names what nomad keeps where."""
    target = Path(exc.filename) if exc.filename else next(iter(places.values()), Path("."))
    probe = target if target.exists() else target.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    kept = ", ".join(f"{name} {path} ({_gb(_size(path))})" for name, path in places.items()
                     if path.exists())  # fmt: skip
    return BuildError(
        f"disk full while {action}: {_gb(free)} free on the filesystem of {probe}",
        hint=f"free space there (nomad keeps: {kept or 'nothing yet'}); old layouts under the "
        "data dir's images/ and unused weights in the model cache can go, or point "
        "--out / NOMAD_CACHE_DIR at a bigger disk",
    )


@contextlib.contextmanager
def disk_full_is_clear(action: str, places: dict[str, Path]) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside into :func:`disk_full_error` (exit 4)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL:
            raise disk_full_error(exc, action, places) from None
        raise
