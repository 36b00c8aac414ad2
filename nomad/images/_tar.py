"""Deterministic, uncompressed tar layers.

A layer written here depends only on its entries (paths, modes, bytes):
sorted names, mtime 0, uid/gid 0, empty user/group names, modes 0644/0755.
Parent directories are written for a base nomad makes itself (busybox) but
*not* for the layers nomad stacks on a base (weights, workflows): an entry for
``opt/ComfyUI`` would replace the base's folder owner and mode (a non-root
ComfyUI base would end with a root-owned folder it cannot write). Runtimes
(docker, containerd, umoci) create a missing parent as root 0755, exactly
what the entry would have said, and keep an existing one. PAX format, so files above 8 GiB get a size
record instead of breaking ustar. Because the layer is not compressed its
blob digest equals its diff_id, and the same weights give the same digest on
any machine. Data is streamed and hashed as it is written: a weight file is
never loaded into memory.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

BLOCK = 512
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One entry of a layer: a directory, a regular file from disk, or a symlink."""

    path: str  # inside the image, without leading '/'
    kind: str  # "dir" | "file" | "symlink"
    source: Path | None = None  # file: local path to read
    size: int = 0
    mode: int = 0o644
    link: str = ""  # symlink target


@dataclass(frozen=True)
class LayerInfo:
    """What a written layer is: its digest (== diff_id) and size in bytes."""

    digest: str
    size: int


def clean_path(path: str) -> str:
    """Normalise an image path (no leading '/', no '..', no empty parts)."""
    parts = [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"bad image path {path!r}")
    return "/".join(parts)


def file_entry(dest: str, source: Path, *, mode: int = 0o644) -> Entry:
    """A regular file entry; size is read from disk now and checked again while writing."""
    return Entry(clean_path(dest), "file", source=source, size=source.stat().st_size, mode=mode)


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Add every missing parent directory (0755) and sort by path bytes."""
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path] = e
        parent = PurePosixPath(e.path).parent
        while str(parent) not in (".", ""):
            by_path.setdefault(str(parent), Entry(str(parent), "dir", mode=0o755))
            parent = parent.parent
    return [by_path[k] for k in sorted(by_path, key=lambda p: p.encode())]


def _header(e: Entry) -> bytes:
    info = tarfile.TarInfo(e.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = e.mode
    if e.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif e.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = e.link
    else:
        info.type = tarfile.REGTYPE
        info.size = e.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class _HashingWriter:
    """Writes to a file while hashing and counting, so one pass gives digest and size."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)


def write_layer(
    entries: Iterable[Entry],
    out: BinaryIO,
    *,
    on_bytes: Callable[[int], None] | None = None,
    parents: bool = True,
) -> LayerInfo:
    """Write the entries (sorted; parent directories added when ``parents``) into ``out``."""
    w = _HashingWriter(out)
    ordered = with_parents(entries) if parents else sorted(entries, key=lambda e: e.path.encode())
    for e in ordered:
        w.write(_header(e))
        if e.kind == "file":
            assert e.source is not None
            _copy_exact(e, w, on_bytes)
            pad = (-e.size) % BLOCK
            if pad:
                w.write(b"\0" * pad)
    w.write(b"\0" * (2 * BLOCK))
    return LayerInfo("sha256:" + w.sha.hexdigest(), w.size)


def _copy_exact(e: Entry, w: _HashingWriter, on_bytes: Callable[[int], None] | None) -> None:
    """Copy exactly ``e.size`` bytes; a file that changed size meanwhile is an error."""
    assert e.source is not None
    left = e.size
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(e.source, "rb") as f:
        while left:
            n = f.readinto(view[: min(CHUNK, left)])
            if not n:
                raise OSError(f"{e.source} shrank while being written into a layer")
            w.write(view[:n])
            left -= n
            if on_bytes:
                on_bytes(n)
        if f.read(1):
            raise OSError(f"{e.source} grew while being written into a layer")


def write_layer_file(
    entries: Iterable[Entry],
    dest_dir: Path,
    *,
    on_bytes: Callable[[int], None] | None = None,
    parents: bool = True,
) -> tuple[LayerInfo, Path]:
    """Write a layer to a temporary file in ``dest_dir``; the caller renames it by digest."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".layer-{os.getpid()}-{id(entries)}.tmp"
    try:
        with open(tmp, "wb") as f:
            info = write_layer(entries, f, on_bytes=on_bytes, parents=parents)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info, tmp
