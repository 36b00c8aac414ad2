"""Privacy seam: route nomad's HTTP/WebSocket traffic through a SOCKS5h proxy.

The proxy is the Anyone network's ``anon`` client (or Tor). Every client nomad
makes (ComfyUI, registry, Bot API) asks this module for its proxy settings so
privacy is one switch (``privacy.enabled`` or ``$NOMAD_PROXY``).

Two facts from the field notes shape the API:
- httpx does not apply its timeout to the SOCKS handshake; an offline proxy
  hangs ~120 s. :func:`bounded` wraps connects in ``asyncio.timeout`` (``wait_for`` on 3.11 can swallow a cancel).
- websockets reads proxy env vars when not told otherwise, so when privacy is
  off we pass ``proxy=None`` explicitly (:func:`websockets_kwargs`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from nomad.errors import PrivacyError

if TYPE_CHECKING:
    from nomad.config.schema import PrivacyConfig

T = TypeVar("T")

_deadline = 30.0  # privacy.connect_timeout of the running process (see configure)


def configure(cfg: PrivacyConfig) -> None:
    """Adopt ``privacy.connect_timeout`` for every proxied client this process makes."""
    global _deadline
    _deadline = float(cfg.connect_timeout)


def connect_deadline() -> float:
    """Seconds a proxied connect (SOCKS handshake included) may take before it is a PrivacyError."""
    return _deadline


__all__ = [
    "async_client_kwargs",
    "bounded",
    "configure",
    "connect_deadline",
    "httpx_kwargs",
    "proxy_url",
    "sync_client_kwargs",
    "websockets_kwargs",
]


def proxy_url(cfg: PrivacyConfig | None) -> str | None:
    """The SOCKS URL to use, or None when privacy is off."""
    if cfg is None or not cfg.enabled:
        return None
    return cfg.proxy


def httpx_kwargs(proxy: str | None) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client/AsyncClient``.

    httpx speaks ``socks5://`` and resolves names at the proxy only for
    ``socks5h``-style use when given the hostname; we pass the URL through
    unchanged (httpx >= 0.28 accepts socks5h) and never trust env proxies.
    """
    return {"proxy": proxy, "trust_env": False} if proxy else {"trust_env": False}


def async_client_kwargs(proxy: str | None, deadline: float | None = None) -> dict[str, Any]:
    """``httpx.AsyncClient`` kwargs: through ``proxy`` with a handshake deadline, or direct; never env proxies."""
    if not proxy:
        return {"trust_env": False}
    from nomad.privacy.guard import normalize_proxy
    from nomad.privacy.transport import async_transport

    seconds = _deadline if deadline is None else deadline
    return {"transport": async_transport(normalize_proxy(proxy), seconds), "trust_env": False}


def sync_client_kwargs(proxy: str | None, deadline: float | None = None) -> dict[str, Any]:
    """``httpx.Client`` kwargs, the sync twin of :func:`async_client_kwargs` (health checks)."""
    if not proxy:
        return {"trust_env": False}
    from nomad.privacy.guard import normalize_proxy
    from nomad.privacy.transport import sync_transport

    seconds = _deadline if deadline is None else deadline
    return {"transport": sync_transport(normalize_proxy(proxy), seconds), "trust_env": False}


def websockets_kwargs(proxy: str | None) -> dict[str, Any]:
    """Keyword arguments for ``websockets.connect``: always explicit, never env-derived."""
    return {"proxy": proxy}


async def bounded(aw: Awaitable[T], seconds: float, what: str) -> T:
    """Await with a hard deadline; a hung SOCKS handshake becomes a PrivacyError/timeout."""
    try:
        async with asyncio.timeout(seconds):
            return await aw
    except TimeoutError:
        raise PrivacyError(
            f"{what}: no answer within {seconds:g} s",
            hint="is the anon/tor client running and bootstrapped? check `nomad doctor`",
        ) from None
