"""SOCKS servers that misbehave on purpose, for tests of the privacy deadlines (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stuck_socks(*, answer_greeting: bool = False) -> Iterator[str]:
    """A TCP server on loopback that accepts and never answers — a wedged or still-bootstrapping
    proxy; with ``answer_greeting`` it answers the SOCKS5 greeting (no auth) and then sits on the
    CONNECT, like a working tor still trying an unreachable hidden service. Yields its
    ``socks5h://`` URL."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn = srv.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)
            if answer_greeting:
                with contextlib.suppress(OSError):
                    conn.recv(16)
                    conn.sendall(b"\x05\x00")

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"socks5h://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(timeout=2)
        for c in held:
            c.close()
        srv.close()
