"""httpx transports whose SOCKS handshake has a hard deadline.

Why: httpcore reads the SOCKS5 handshake with no timeout (it passes
``timeout=None``), so a proxy that accepts and never answers — an ``anon``
client still bootstrapping, a wedged Tor — hangs every client for ever,
whatever httpx timeout was set. HTTP reads always carry httpx's own read
timeout, so a read with ``None`` here is the handshake: it gets the deadline,
and running past it is a :class:`httpcore.ProxyError` naming the proxy, which
callers turn into a :class:`~nomad.errors.PrivacyError` (exit code 8).

The transports also never read proxy environment variables: with privacy off
there is no proxy at all.
"""

from __future__ import annotations

import ssl
import typing
from typing import Any

import httpcore
import httpx

DEFAULT_DEADLINE_S = 30.0
SILENT = "accepted the connection but gave no answer"  # the proxy is wedged (or not up)
PENDING = "answered but could not reach the destination"  # the proxy works; the far end is slow


def _proxy_error(proxy: str, seconds: float, answered: bool = False) -> httpcore.ProxyError:
    """No answer within the deadline. ``answered``: the proxy took the greeting and then sat on
    the CONNECT — it is alive and still trying the destination (a hidden service whose
    descriptor is stale or not yet published can take minutes); otherwise the proxy is silent."""
    if answered:
        return httpcore.ProxyError(
            f"SOCKS proxy {proxy} {PENDING} within {seconds:g} s"
        )
    return httpcore.ProxyError(f"SOCKS proxy {proxy} {SILENT} within {seconds:g} s")


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float, proxy: str) -> None:
        self._inner, self._deadline, self._proxy = inner, deadline, proxy
        self._answered = False  # the proxy answered the greeting (handshake reads so far)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if timeout is not None:
            return self._inner.read(max_bytes, timeout)
        try:
            data = self._inner.read(max_bytes, self._deadline)
        except httpcore.ReadTimeout:
            raise _proxy_error(self._proxy, self._deadline, self._answered) from None
        self._answered = True
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline if timeout is None else timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout or self._deadline)
        return _Stream(inner, self._deadline, self._proxy)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: float, proxy: str) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline, self._proxy = deadline, proxy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, timeout or self._deadline, local_address, socket_options
        )
        return _Stream(stream, self._deadline, self._proxy)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, timeout or self._deadline, socket_options)
        return _Stream(stream, self._deadline, self._proxy)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, deadline: float, proxy: str) -> None:
        self._inner, self._deadline, self._proxy = inner, deadline, proxy
        self._answered = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if timeout is not None:
            return await self._inner.read(max_bytes, timeout)
        try:
            data = await self._inner.read(max_bytes, self._deadline)
        except httpcore.ReadTimeout:
            raise _proxy_error(self._proxy, self._deadline, self._answered) from None
        self._answered = True
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, self._deadline if timeout is None else timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout or self._deadline)
        return _AsyncStream(inner, self._deadline, self._proxy)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, deadline: float, proxy: str) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._deadline, self._proxy = deadline, proxy

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout or self._deadline, local_address, socket_options
        )
        return _AsyncStream(stream, self._deadline, self._proxy)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout or self._deadline, socket_options
        )
        return _AsyncStream(stream, self._deadline, self._proxy)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _proxy_url(proxy: str) -> httpcore.URL:
    url = httpx.URL(proxy)
    if url.scheme not in ("socks5", "socks5h"):
        raise ValueError(f"not a SOCKS5 proxy URL: {proxy}")
    # httpcore always sends the host name to the proxy (remote resolution), as socks5h asks.
    return httpcore.URL(scheme=b"socks5", host=url.raw_host, port=url.port or 1080, target=b"/")


def sync_transport(
    proxy: str,
    deadline: float = DEFAULT_DEADLINE_S,
    *,
    max_connections: int = 10,
    verify: bool = True,
) -> httpx.HTTPTransport:
    """An ``httpx.HTTPTransport`` through ``proxy`` whose handshake cannot hang past ``deadline``.

    ``verify=False`` skips TLS verification (a registry marked ``insecure``), as httpx's does.
    """
    transport = httpx.HTTPTransport(trust_env=False)
    transport._pool = httpcore.SOCKSProxy(  # the one attribute httpx builds its pool in
        proxy_url=_proxy_url(proxy),
        network_backend=_Backend(deadline, _display(proxy)),
        max_connections=max_connections,
        ssl_context=None if verify else _unverified(),
    )
    return transport


def async_transport(
    proxy: str, deadline: float = DEFAULT_DEADLINE_S, *, max_connections: int = 10
) -> httpx.AsyncHTTPTransport:
    """The async twin of :func:`sync_transport`."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncSOCKSProxy(
        proxy_url=_proxy_url(proxy),
        network_backend=_AsyncBackend(deadline, _display(proxy)),
        max_connections=max_connections,
    )
    return transport


def _unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def _display(proxy: str) -> str:
    """host:port of the proxy, without credentials."""
    url = httpx.URL(proxy)
    return f"{url.host}:{url.port or 1080}"
