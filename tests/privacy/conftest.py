"""The real anon/tor binaries for the privacy tests, or a skip that says why they are absent.

``anon`` is looked up as ``$ANON_BIN``, then beside this Python (``.ci/fetch-anon``
links it into ``.venv/bin``), then on PATH. When the set-up could not fetch it,
it left the reason in ``<venv>/anon-unavailable`` and the skip repeats it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FETCH_HINT = "bash .ci/fetch-anon (linux/x64) or set $ANON_BIN"


@dataclass(frozen=True)
class ClientBinaries:
    """One Tor-protocol client: ``kind`` is the privacy.client name, ``gencert`` its key tool."""

    kind: str
    binary: str
    gencert: str | None


def find_anon() -> ClientBinaries | str:
    """The anon binaries, or why there are none."""
    env = os.environ.get("ANON_BIN")
    if env:
        if not os.access(env, os.X_OK):
            return f"$ANON_BIN={env} is not an executable file"
        found: str | None = env
    else:
        beside = Path(sys.executable).parent / "anon"
        found = str(beside) if os.access(beside, os.X_OK) else shutil.which("anon")
    if found is None:
        why = Path(sys.prefix) / "anon-unavailable"
        reason = why.read_text().strip() if why.is_file() else "not found"
        return f"anon: {reason} ({FETCH_HINT})"
    gencert = Path(found).resolve().with_name("anon-gencert")
    beside_gencert = Path(sys.executable).parent / "anon-gencert"
    candidates = [gencert, beside_gencert, shutil.which("anon-gencert")]
    return ClientBinaries(
        "anon", found, next((str(c) for c in candidates if c and os.access(c, os.X_OK)), None)
    )


def find_tor() -> ClientBinaries | str:
    """Debian's tor and tor-gencert, or why there are none."""
    tor = shutil.which("tor")
    if tor is None:
        return "tor not installed (apt-get install tor; .ci/setup --tests does)"
    return ClientBinaries("tor", tor, shutil.which("tor-gencert"))


@pytest.fixture(params=["tor", "anon"])
def client_binaries(request: pytest.FixtureRequest) -> ClientBinaries:
    """Each real client in turn (Debian tor, the Anyone network's anon); skipped with the reason when absent."""
    found = find_tor() if request.param == "tor" else find_anon()
    if isinstance(found, str):
        pytest.skip(found)
    return found
