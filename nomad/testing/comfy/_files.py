"""The files the double "produces": real tiny PNGs (with tEXt chunks) and container-shaped videos."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Mapping


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(seed: bytes, *, size: int = 8, text: Mapping[str, str] | None = None) -> bytes:
    """A real (tiny) RGB PNG whose pixels derive from ``seed``; ``text`` goes into tEXt chunks."""
    digest = hashlib.sha256(seed).digest()
    rows = b"".join(
        b"\x00"
        + b"".join(
            bytes((digest[(x + y) % 32], digest[(3 * x + y) % 32], (32 * x + 8 * y) & 255))
            for x in range(size)
        )
        for y in range(size)
    )
    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    texts = b"".join(
        _chunk(b"tEXt", k.encode() + b"\x00" + v.encode("latin-1", "replace"))
        for k, v in (text or {}).items()
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + texts
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def png_text(data: bytes) -> dict[str, str]:
    """Read the tEXt chunks of a PNG (tests use it to see what FakeComfy derived an output from)."""
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            out[key.decode()] = value.decode("latin-1")
        pos += 12 + length
    return out


def _video_bytes(meta: bytes, ext: str) -> bytes:
    """A small container-shaped blob: an ISO-BMFF ``ftyp`` box (mp4) or a RIFF/WEBP header."""
    if ext == "webp":
        body = b"WEBP" + b"VP8L" + struct.pack("<I", len(meta)) + meta
        return b"RIFF" + struct.pack("<I", len(body)) + body
    ftyp = b"ftypisom" + b"\x00\x00\x02\x00" + b"isomiso2mp41"
    free = b"free" + meta
    return struct.pack(">I", len(ftyp) + 4) + ftyp + struct.pack(">I", len(free) + 4) + free
