"""Find the one file in a single-file tar layer from its first bytes.

A weight layer (nomad's, or any tool's ``COPY model /models/x``) is: a few
directory headers, (maybe) a PAX or GNU long-name header, the file's header,
the file's bytes, zero padding, the end-of-archive blocks. Knowing where the
file's bytes start is all a node needs to write them to their final file
while they stream, skipping the tar headers on the fly.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass

BLOCK = 512
_SKIP = {
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.FIFOTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
}


class NotAWeightLayer(ValueError):
    """The layer does not hold exactly one regular file."""


@dataclass(frozen=True)
class FileSpan:
    """Where the layer's file lives inside the (uncompressed) tar stream."""

    path: str
    offset: int  # first byte of the file's data in the tar stream
    size: int


def _pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        length = int(data[pos:sp])
        if length <= 0:
            break
        key, _, value = data[sp + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def first_file(buf: bytes | bytearray | memoryview) -> FileSpan | None:
    """The span of the first regular file, or None when ``buf`` is too short to tell.

    Raises :class:`NotAWeightLayer` when the archive ends before any file.
    """
    off = 0
    pending: dict[str, str] = {}
    view = memoryview(buf)
    while True:
        if off + BLOCK > len(view):
            return None
        block = bytes(view[off : off + BLOCK])
        if block == b"\0" * BLOCK:
            raise NotAWeightLayer("the layer holds no regular file")
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise NotAWeightLayer(f"not a tar stream ({exc})") from None
        size = int(pending.get("size", info.size))
        data_end = off + BLOCK + size
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
            if data_end > len(view):
                return None
            raw = bytes(view[off + BLOCK : data_end])
            if info.type == tarfile.XHDTYPE:
                pending.update(_pax(raw))
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                pending["path"] = raw.rstrip(b"\0").decode("utf-8", "surrogateescape")
            off = data_end + (-size) % BLOCK
            continue
        if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
            return FileSpan(pending.get("path", info.name).lstrip("/"), off + BLOCK, size)
        if info.type not in _SKIP:
            raise NotAWeightLayer(f"unexpected tar entry type {info.type!r}")
        pending = {}
        off = data_end + (-size) % BLOCK


def check_tail(tail: bytes) -> None:
    """After the file's bytes only padding and end-of-archive blocks (zeros) may follow."""
    if tail.strip(b"\0"):
        raise NotAWeightLayer("the layer holds more than one file")
