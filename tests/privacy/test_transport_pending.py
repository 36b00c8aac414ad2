"""A proxy that answers the SOCKS greeting and then sits on the CONNECT is alive and still
trying the destination (a hidden service with a stale or unpublished descriptor): that is a
"not reachable yet" for health waits, unlike a proxy that never answers at all (wedged), which
fails at once. Seen for real: `nomad up` relaunching a node under the address of the previous
wake failed at the handshake deadline while tor was still trying the old descriptor."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from nomad import launch, privacy
from nomad.launch import UnhealthyError
from nomad.privacy import onion
from nomad.privacy.transport import PENDING, SILENT

URL = "http://" + onion.encode(bytes(32), "onion")


@pytest.fixture
def greeting_only() -> Iterator[int]:
    """A SOCKS5 server that answers the greeting (no auth) and never answers the CONNECT."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.recv(16)
            conn.sendall(b"\x05\x00")
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


def test_greeting_answered_then_silence_is_pending_and_waited_for(greeting_only: int) -> None:
    proxy = f"socks5h://127.0.0.1:{greeting_only}"
    with httpx.Client(**privacy.sync_client_kwargs(proxy, deadline=0.3)) as http:
        with pytest.raises(httpx.ProxyError) as err:
            http.get(URL + "/system_stats")
        assert PENDING in str(err.value) and SILENT not in str(err.value)
        assert not launch.proxy_is_silent(err.value)
        now = [0.0]
        with pytest.raises(UnhealthyError, match="could not reach the destination"):
            launch.wait_healthy(  # kept polling to the health deadline, then said why
                [URL], timeout_s=1.0, interval_s=0.5, client=http,
                clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
            )  # fmt: skip
