"""Generation metadata out of outputs: ComfyUI writes the whole graph into every PNG.

ComfyUI's SaveImage adds ``tEXt`` chunks ``prompt`` (the API graph, prompt
text included) and ``workflow`` (the UI graph). Anyone who gets the file —
a Telegram chat, an S3 bucket's reader — reads the prompt. nomad starts
ComfyUI with ``--disable-metadata`` where it controls the command, and strips
the text chunks here before storing or sending, whoever started the server.
Only ancillary text chunks are removed, so pixels and colour data are untouched.
"""

from __future__ import annotations

import struct
from typing import Protocol

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes) of a PNG; ValueError if it is cut or not a PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated PNG chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        out.append((kind, data[pos:end]))
        pos = end
        if kind == b"IEND":
            break
    return out


def text_keys(data: bytes) -> list[str]:
    """Keywords of the text chunks in a PNG (``prompt``, ``workflow``, …)."""
    keys = []
    for kind, chunk in _chunks(data):
        if kind in TEXT_CHUNKS:
            keys.append(chunk[8:-4].split(b"\0", 1)[0].decode("latin-1"))
    return keys


def strip_png_text(data: bytes) -> bytes:
    """The PNG without tEXt/iTXt/zTXt chunks; other formats and broken files are returned as they are."""
    try:
        chunks = _chunks(data)
    except ValueError:
        return data
    kept = [chunk for kind, chunk in chunks if kind not in TEXT_CHUNKS]
    if len(kept) == len(chunks):
        return data
    return PNG_SIGNATURE + b"".join(kept)


def strip(data: bytes, filename: str) -> bytes:
    """Strip what we know how to strip for this file name (PNG today); other bytes unchanged."""
    if filename.lower().endswith(".png") or data.startswith(PNG_SIGNATURE):
        return strip_png_text(data)
    return data


class _Store(Protocol):
    def put(self, key: str, data: bytes) -> str: ...

    def get(self, key: str) -> bytes: ...


class StrippedOutputs:
    """An output store that strips generation metadata before anything is stored.

    Wraps the worker's store, so what lands in S3 — and therefore what the bot
    and the web door send — carries no prompt.
    """

    def __init__(self, inner: _Store) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes) -> str:
        return self.inner.put(key, strip(data, key))

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def __getattr__(self, name: str) -> object:  # anything else the store offers (e.g. .storage)
        return getattr(self.inner, name)

