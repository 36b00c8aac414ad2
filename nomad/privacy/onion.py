"""Hidden-service (v3 onion / Anyone ``.anon``) addresses: parse and verify.

A v3 address is base32(pubkey[32] | checksum[2] | version[1]) + suffix, where
checksum = SHA3-256(".<suffix> checksum" | pubkey | version)[:2]. Tor uses
``.onion``; the Anyone network's ``anon`` uses ``.anon`` with its own
checksum constant, so the suffix decides which constant is checked.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from nomad.errors import PrivacyError

SUFFIXES = ("onion", "anon")
VERSION = 3


@dataclass(frozen=True)
class OnionAddress:
    """A verified hidden-service address."""

    host: str  # full host name, e.g. abc….anon
    pubkey: bytes
    suffix: str


def _checksum(pubkey: bytes, suffix: str) -> bytes:
    return hashlib.sha3_256(f".{suffix} checksum".encode() + pubkey + bytes([VERSION])).digest()[:2]


def encode(pubkey: bytes, suffix: str = "anon") -> str:
    """The address for an ed25519 public key (32 bytes)."""
    if len(pubkey) != 32 or suffix not in SUFFIXES:
        raise ValueError("pubkey must be 32 bytes and suffix onion|anon")
    raw = pubkey + _checksum(pubkey, suffix) + bytes([VERSION])
    return base64.b32encode(raw).decode().lower() + "." + suffix


def parse(host: str) -> OnionAddress:
    """Verify an address's length, version and checksum; raise PrivacyError otherwise."""
    host = host.strip().lower()
    label, _, suffix = host.rpartition(".")
    if suffix not in SUFFIXES or len(label) != 56:
        raise PrivacyError(f"{host!r} is not a v3 hidden-service address (56 chars + .onion/.anon)")
    try:
        raw = base64.b32decode(label.upper())
    except ValueError:
        raise PrivacyError(f"{host!r}: not base32") from None
    pubkey, check, version = raw[:32], raw[32:34], raw[34]
    if version != VERSION:
        raise PrivacyError(f"{host!r}: version {version}, expected {VERSION}")
    if check != _checksum(pubkey, suffix):
        raise PrivacyError(f"{host!r}: checksum mismatch (typo in the address?)")
    return OnionAddress(host=host, pubkey=pubkey, suffix=suffix)


def read_hostname(service_dir: Path) -> OnionAddress:
    """Read and verify ``HiddenServiceDir/hostname`` written by anon/tor."""
    path = service_dir / "hostname"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise PrivacyError(
            f"{path} does not exist yet",
            hint="the anon/tor client writes it within a second of start",
        ) from None
    return parse(text)
