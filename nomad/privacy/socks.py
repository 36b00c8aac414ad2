"""A blocking SOCKS5h connect with a hard deadline, for clients that are not httpx.

boto3 (urllib3 underneath) and the weight fetcher (stdlib ``http.client``)
open their own sockets. botocore only speaks *HTTP* proxies (its ``proxies``
config goes to urllib3's ``proxy_from_url``, which refuses ``socks5h``), and
urllib3's own SOCKS support needs PySocks. Both clients let us supply the
socket instead, so the route is the same everywhere: :func:`open_socket` does
the SOCKS5 greeting and CONNECT with the host *name* (resolved by the proxy,
never by DNS here) under ``deadline``, and the client speaks HTTP/TLS over it.

Errors: a proxy that refuses or never answers is a :class:`PrivacyError`
(exit 8) naming the proxy; a proxy that answers but cannot reach the target
is a :class:`ConnectionError` (the client's own retries apply).
"""

from __future__ import annotations

import http.client
import socket
from typing import Any
from urllib.parse import urlsplit

import socksio

from nomad.errors import PrivacyError

_HINT = "is the anon/tor client running and bootstrapped? check `nomad doctor`"


def proxy_address(proxy: str) -> tuple[str, int]:
    """(host, port) of a ``socks5h://`` URL (credentials never kept)."""
    parts = urlsplit(proxy)
    return parts.hostname or "127.0.0.1", parts.port or 1080


def open_socket(
    proxy: str, host: str, port: int, deadline: float, timeout: float | None = None
) -> socket.socket:
    """A TCP socket to ``host:port`` through ``proxy``; the handshake never outlives ``deadline``.

    The returned socket carries ``timeout`` (the client's own read timeout) afterwards.
    """
    phost, pport = proxy_address(proxy)
    where = f"{phost}:{pport}"
    try:
        sock = socket.create_connection((phost, pport), timeout=deadline)
    except OSError as exc:
        raise PrivacyError(
            f"SOCKS proxy {where} refused the connection ({exc.strerror or exc})", hint=_HINT
        ) from None
    try:
        sock.settimeout(deadline)
        _handshake(sock, host, port, where)
    except TimeoutError:
        sock.close()
        raise PrivacyError(
            f"SOCKS proxy {where} accepted the connection but gave no answer within {deadline:g} s",
            hint=_HINT,
        ) from None
    except BaseException:
        sock.close()
        raise
    sock.settimeout(timeout)
    return sock


def _handshake(sock: socket.socket, host: str, port: int, where: str) -> None:
    conn = socksio.socks5.SOCKS5Connection()
    conn.send(
        socksio.socks5.SOCKS5AuthMethodsRequest([socksio.socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED])
    )
    sock.sendall(conn.data_to_send())
    reply = conn.receive_data(_recv(sock, where))
    if (
        not isinstance(reply, socksio.socks5.SOCKS5AuthReply)
        or reply.method != socksio.socks5.SOCKS5AuthMethod.NO_AUTH_REQUIRED
    ):
        raise PrivacyError(
            f"SOCKS proxy {where} wants authentication nomad does not send", hint=_HINT
        )
    request = socksio.socks5.SOCKS5CommandRequest.from_address(
        socksio.socks5.SOCKS5Command.CONNECT, (host, port)
    )
    conn.send(request)
    sock.sendall(conn.data_to_send())
    answer = conn.receive_data(_recv(sock, where))
    if not isinstance(answer, socksio.socks5.SOCKS5Reply):  # pragma: no cover - socksio's contract
        raise PrivacyError(f"SOCKS proxy {where} sent a malformed reply", hint=_HINT)
    if answer.reply_code != socksio.socks5.SOCKS5ReplyCode.SUCCEEDED:
        raise ConnectionError(
            f"SOCKS proxy {where} could not reach {host}:{port} ({answer.reply_code.name})"
        )


def _recv(sock: socket.socket, where: str) -> bytes:
    data = sock.recv(1024)
    if not data:
        raise PrivacyError(f"SOCKS proxy {where} closed the connection mid-handshake", hint=_HINT)
    return data


def route_http_client(conn: http.client.HTTPConnection, proxy: str, deadline: float) -> None:
    """Make a stdlib ``HTTP(S)Connection`` open its socket through ``proxy`` (TLS on top)."""

    def create(address: tuple[str, int], timeout: Any = None, source: Any = None) -> socket.socket:
        limit = timeout if isinstance(timeout, int | float) else None
        return open_socket(proxy, address[0], address[1], deadline, limit)

    conn._create_connection = create  # type: ignore[attr-defined]  # http.client's socket hook
