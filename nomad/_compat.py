"""What differs between the Python releases nomad supports (≥ 3.11.2, e.g. Debian 12).

One place for feature detection, so callers never test version numbers and a
user never meets a raw ``TypeError`` from a keyword their Python lacks.
"""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from pathlib import Path

__all__ = ["HAS_TAR_FILTERS", "safe_extractall"]

# tarfile's extraction filters (PEP 706) arrived in 3.11.4; Debian 12 ships 3.11.2.
HAS_TAR_FILTERS = hasattr(tarfile, "data_filter")


def safe_extractall(tf: tarfile.TarFile, dest: Path) -> None:
    """Extract ``tf`` into ``dest`` refusing anything that could escape or surprise it.

    With PEP 706 filters this is ``filter="data"``. Without them (3.11.0 to 3.11.3)
    :func:`_extract_plain` applies a stricter rule of its own; both raise a
    :class:`tarfile.TarError` subclass on a hostile member.
    """
    if HAS_TAR_FILTERS:
        tf.extractall(dest, filter="data")
    else:  # the tests run _extract_plain directly on every Python
        _extract_plain(tf, dest)


class UnsafeMemberError(tarfile.TarError):
    """A member the fallback extractor refuses (path escape, link, device)."""


def _extract_plain(tf: tarfile.TarFile, dest: Path) -> None:
    """Regular files and directories only, each strictly inside ``dest``; written by us.

    Stricter than the ``data`` filter (which also allows links inside the
    destination): the archives nomad unpacks (OCI image layouts) hold only
    files and folders. Owners, modes beyond ``0o644``/``0o755`` and times are
    not taken from the archive.
    """
    root = dest.resolve()
    members = tf.getmembers()
    for m in members:  # check everything before writing anything
        name = posixpath.normpath(m.name)
        if m.name.startswith("/") or name == ".." or name.startswith("../"):
            raise UnsafeMemberError(f"{m.name!r} would be written outside {dest}")
        if not (m.isfile() or m.isdir()):
            raise UnsafeMemberError(f"{m.name!r} is a link or special file; only files and folders")
    for m in members:
        target = (root / posixpath.normpath(m.name)).resolve()
        if target != root and root not in target.parents:
            raise UnsafeMemberError(f"{m.name!r} would be written outside {dest}")
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tf.extractfile(m)
        if src is None:  # pragma: no cover - isfile() members always have data
            raise UnsafeMemberError(f"{m.name!r} has no data")
        with src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
        target.chmod(0o755 if m.mode & 0o100 else 0o644)
