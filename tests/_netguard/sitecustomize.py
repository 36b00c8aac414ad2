"""Test-suite network guard: no Python process of the suite connects outside loopback.

tests/conftest.py loads this into the pytest process and puts this folder
first on PYTHONPATH, so every Python child that inherits the environment
(the `nomad` CLI, the SkyPilot plan worker, FakeComfy, the AWS CLI SkyPilot
shells out to) imports it at start-up as ``sitecustomize``. A connect (or a
UDP sendto) to an address outside 127.0.0.0/8 and ::1 is refused with
ENETUNREACH — what a loopback-only network would answer — and recorded in
``$NOMAD_TEST_NETLOG``; the session fails if that file has any line.

Pure standard library: it runs inside whatever Python a child uses.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from typing import Any


def _outside(sock: Any, address: Any) -> str | None:
    """``host:port`` when ``address`` leaves the machine, else None."""
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return None
    if not isinstance(address, tuple) or not address:
        return None
    host = str(address[0]).split("%", 1)[0]
    if host in ("localhost", ""):
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{address[1] if len(address) > 1 else '?'}"  # a name: resolved elsewhere
    mapped = getattr(ip, "ipv4_mapped", None)
    if ip.is_loopback or (mapped is not None and mapped.is_loopback):
        return None
    return f"{host}:{address[1] if len(address) > 1 else '?'}"


def _record(where: str) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    line = f"{where}\tpid {os.getpid()}\t{' '.join(sys.argv[:3])[:200]}\t{test}\n"
    log = os.environ.get("NOMAD_TEST_NETLOG")  # read now: a test may point it elsewhere
    if log:
        try:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass


def _refuse(where: str) -> OSError:
    _record(where)
    return OSError(errno.ENETUNREACH, f"nomad test network guard: {where} is outside loopback")


def install() -> None:
    """Wrap socket.connect/connect_ex/sendto once per process."""
    cls = socket.socket
    if getattr(cls, "_nomad_netguard", False):
        return
    connect, connect_ex, sendto = cls.connect, cls.connect_ex, cls.sendto

    def guarded_connect(self: Any, address: Any) -> Any:
        where = _outside(self, address)
        if where:
            raise _refuse(where)
        return connect(self, address)

    def guarded_connect_ex(self: Any, address: Any) -> Any:
        where = _outside(self, address)
        if where:
            _refuse(where)
            return errno.ENETUNREACH
        return connect_ex(self, address)

    def guarded_sendto(self: Any, data: Any, *args: Any) -> Any:
        where = _outside(self, args[-1]) if args else None
        if where:
            raise _refuse(where)
        return sendto(self, data, *args)

    cls.connect = guarded_connect  # type: ignore[method-assign]
    cls.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    cls.sendto = guarded_sendto  # type: ignore[method-assign]
    cls._nomad_netguard = True  # type: ignore[attr-defined]


if os.environ.get("NOMAD_TEST_NETLOG"):
    install()
