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

__all__ = ["bounded", "httpx_kwargs", "proxy_url", "websockets_kwargs"]


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
