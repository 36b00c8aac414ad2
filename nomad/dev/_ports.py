"""Pick free loopback ports once; the stack remembers them in its data dir."""

from __future__ import annotations

import contextlib
import socket

from nomad import osutil

HOST = "127.0.0.1"


def port_free(port: int, host: str = HOST) -> bool:
    """True if nothing listens on ``host:port`` right now (see :func:`nomad.osutil.port_free`)."""
    return osutil.port_free(host, port)


def pick_ports(
    names: list[str], paired: dict[str, tuple[str, int]] | None = None
) -> dict[str, int]:
    """Distinct free ports for ``names``, held open while picking so none repeat.

    ``paired`` maps a name to (other name, offset): that port is chosen so that
    ``port + offset`` is free too and assigned to the other name (SeaweedFS's
    plugin worker dials admin port + 10000 regardless of flags).
    """
    paired = paired or {}
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for name in names:
            if name in ports:
                continue
            if name in paired:
                other, offset = paired[name]
                ports[name], ports[other] = _pair(held, offset)
            else:
                ports[name] = _hold(held, 0)
    finally:
        for s in held:
            s.close()
    return ports


def _hold(held: list[socket.socket], port: int) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
    except OSError:
        s.close()
        raise
    held.append(s)
    return int(s.getsockname()[1])


def _pair(held: list[socket.socket], offset: int) -> tuple[int, int]:
    for _ in range(200):
        base = _hold(held, 0)
        if base + offset > 65535:
            continue
        with contextlib.suppress(OSError):
            return base, _hold(held, base + offset)
    raise OSError(f"no free pair of loopback ports {offset} apart")
