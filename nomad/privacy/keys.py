"""Hidden-service keys made by nomad, so a node's address is known before the node exists.

Why nomad makes the keys instead of letting the node's anon/tor do it: the
address must be the same on every wake (a cloud node's disk is gone after
``down``), and serve must know it to reach the node, which has no open port
and no way to report back except through the address itself. So the key lives
on nomad's side (``DATA_DIR/privacy/keys/<cluster>/gpu<i>/``, 0600 in a 0700
folder) and is shipped to the node; the address is computed here from the
public key, never read back.

The files are Tor's v3 format, which ``anon`` shares: a 32-byte header
(``== ed25519v1-secret: type0 ==`` padded with NULs) followed by the
*expanded* secret key (SHA-512 of the seed, clamped: scalar ‖ prefix), and
the public key with its own header. anon/tor read these and publish the
service under the address :func:`nomad.privacy.onion.encode` gives for the
public key (``.anon`` and ``.onion`` differ only in the checksum).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad.errors import PrivacyError
from nomad.privacy.onion import encode

SECRET_FILE = "hs_ed25519_secret_key"
PUBLIC_FILE = "hs_ed25519_public_key"
SECRET_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
PUBLIC_HEADER = b"== ed25519v1-public: type0 ==\x00\x00\x00"


@dataclass(frozen=True)
class ServiceKey:
    """One hidden service's key folder on nomad's side and its public key."""

    folder: Path
    pubkey: bytes

    def address(self, suffix: str) -> str:
        """``<56 chars>.anon`` (anon) or ``.onion`` (tor) for this key."""
        return encode(self.pubkey, suffix)


def public_key(seed: bytes) -> bytes:
    """The ed25519 public key of a 32-byte seed (RFC 8032), computed by ``cryptography``."""
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError:  # pragma: no cover - the privacy extra installs it
        raise PrivacyError(
            "hidden-service keys need the `cryptography` package",
            hint="pip install 'nomad-comfy[privacy]'",
        ) from None
    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def expanded_secret(seed: bytes) -> bytes:
    """Tor's stored form of the secret key: SHA-512(seed) with the scalar clamped."""
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def ensure_key(folder: Path) -> ServiceKey:
    """The key in ``folder``, made (0600 files in a 0700 folder) if there is none yet.

    A folder with a public key but no secret key (or the reverse) is refused
    rather than overwritten: replacing a key changes the address users know.
    """
    secret_path, public_path = folder / SECRET_FILE, folder / PUBLIC_FILE
    if secret_path.exists() or public_path.exists():
        return read_key(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    seed = secrets.token_bytes(32)
    pub = public_key(seed)
    _write_private(secret_path, SECRET_HEADER + expanded_secret(seed))
    _write_private(public_path, PUBLIC_HEADER + pub)
    return ServiceKey(folder, pub)


def read_key(folder: Path) -> ServiceKey:
    """A key folder written by :func:`ensure_key` (or by anon/tor), checked for shape and mode."""
    secret_path, public_path = folder / SECRET_FILE, folder / PUBLIC_FILE
    try:
        secret = secret_path.read_bytes()
        public = public_path.read_bytes()
    except FileNotFoundError as exc:
        raise PrivacyError(
            f"{folder} holds half a hidden-service key ({Path(str(exc.filename)).name} is missing)",
            hint="restore the missing file from a backup; deleting the folder gives the service "
            "a new address",
        ) from None
    if not (secret.startswith(SECRET_HEADER) and len(secret) == 96):
        raise PrivacyError(f"{secret_path} is not an ed25519 v3 secret key")
    if not (public.startswith(PUBLIC_HEADER) and len(public) == 64):
        raise PrivacyError(f"{public_path} is not an ed25519 v3 public key")
    mode = secret_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PrivacyError(
            f"{secret_path} is readable by others (mode {mode:o})",
            hint=f"chmod 600 {secret_path}",
        )
    return ServiceKey(folder, public[32:])


def cluster_keys(
    root: Path, cluster: str, count: int, in_use: Callable[[str], bool] | None = None
) -> list[ServiceKey]:
    """One key per ComfyUI of ``cluster`` (``root/<slot>/gpu<i>``), the same on every wake."""
    slot = slot_for(root, cluster, in_use)
    return [ensure_key(root / slot / f"gpu{i}") for i in range(max(count, 1))]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# -- slots: the same address for every wake --------------------------------------------------
#
# serve names each wake's cluster anew (``p-serve``, ``p-serve-2``, …), so keys per cluster
# name would give every wake a new address. Keys belong to *slots* instead; a new cluster
# takes the lowest slot whose cluster is gone, so one-cluster deployments keep one address.

SLOTS_FILE = "slots.json"


def slot_for(
    root: Path,
    cluster: str,
    in_use: Callable[[str], bool] | None = None,
    *,
    grace_s: float = 900.0,
    clock: Callable[[], float] = time.time,
) -> str:
    """The key slot of ``cluster``: its own if it has one, else the lowest free one, else new.

    A slot is free when its cluster was released (torn down by nomad) or when ``in_use``
    says that cluster is gone and it was assigned more than ``grace_s`` ago (a launch still
    in flight is unknown to its backend, and must keep its address)."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(root):
        doc = _slots(root)
        for slot, row in doc.items():
            if row.get("cluster") == cluster:
                return slot
        now = clock()
        chosen = None
        for slot in sorted(doc, key=_slot_index):
            row = doc[slot]
            if row.get("released") or (
                in_use is not None
                and now - float(row.get("at", 0)) > grace_s
                and not in_use(str(row.get("cluster")))
            ):
                chosen = slot
                break
        chosen = chosen or f"slot{len(doc)}"
        doc[chosen] = {"cluster": cluster, "at": now}
        _save(root, doc)
        return chosen


def release(root: Path, cluster: str) -> None:
    """``cluster`` is gone (torn down by nomad): its slot, and address, go to the next wake."""
    if not (root / SLOTS_FILE).exists():
        return
    with _locked(root):
        doc = _slots(root)
        for row in doc.values():
            if row.get("cluster") == cluster:
                row["released"] = True
        _save(root, doc)


def _slot_index(slot: str) -> int:
    return int(slot.removeprefix("slot")) if slot.removeprefix("slot").isdigit() else 1 << 30


def _slots(root: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((root / SLOTS_FILE).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise PrivacyError(
            f"{root / SLOTS_FILE} is unreadable: {exc}",
            hint="restore it, or delete it (running clusters keep their keys; new wakes may "
            "take a different address)",
        ) from None
    return doc if isinstance(doc, dict) else {}


def _save(root: Path, doc: dict[str, dict[str, Any]]) -> None:
    tmp = root / (SLOTS_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    tmp.replace(root / SLOTS_FILE)


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / ".slots.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
