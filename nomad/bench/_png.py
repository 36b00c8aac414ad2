"""A deterministic input photo for benchmarking edit workflows when none is given."""

from __future__ import annotations

import struct
import zlib


def gradient_png(size: int = 512) -> bytes:
    """A ``size`` x ``size`` RGB gradient PNG, written with zlib only (no imaging library)."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(size) for v in (x * 255 // size, y * 255 // size, 128))
        for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )
