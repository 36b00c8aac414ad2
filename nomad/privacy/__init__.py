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
import logging
import threading
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from nomad.errors import PrivacyError

if TYPE_CHECKING:
    from nomad.config.schema import PrivacyConfig

T = TypeVar("T")
Leg = Literal["comfy", "telegram", "registry", "s3", "downloads", "webhooks"]
LEGS: tuple[Leg, ...] = ("comfy", "telegram", "registry", "s3", "downloads", "webhooks")
log = logging.getLogger(__name__)
_warned: set[str] = set()  # legs already reported as direct in this process

_deadline = 30.0  # privacy.connect_timeout of the running process (see configure)
_managed_dir: Path | None = None  # the data dir of a managed client this process may start
_ensured = False
_ensure_lock = threading.Lock()


def configure(cfg: PrivacyConfig, data_dir: Path | None = None) -> None:
    """Adopt ``privacy.connect_timeout`` for every proxied client this process makes; with
    ``data_dir`` (the CLI gives it), ``privacy.mode: managed`` starts the client on first use."""
    global _deadline, _managed_dir
    _deadline = float(cfg.connect_timeout)
    if data_dir is not None:
        _managed_dir = Path(data_dir)


def ensure_managed(cfg: PrivacyConfig) -> None:
    """``privacy.mode: managed``: the client must run before the first proxied connect.

    Adopts the one running for this data dir (serve's, or one an earlier command started);
    else starts it, waits for its bootstrap, and leaves it running for the next command
    (bootstrapping costs seconds to minutes; `nomad dev down` stops it). Once per process."""
    global _ensured
    if not cfg.enabled or cfg.mode != "managed" or _managed_dir is None or _ensured:
        return
    with _ensure_lock:
        if _ensured:
            return
        from nomad.privacy.managed import ManagedClient

        client = ManagedClient(cfg, _managed_dir)
        if client.pid() is None:
            log.warning(
                "privacy.mode is managed and no %s client runs for %s: starting it (it keeps "
                "running for later commands; `nomad dev status` shows it, `nomad dev down` "
                "stops it)",
                cfg.client,
                _managed_dir,
            )
        client.start(timeout=max(120.0, cfg.connect_timeout))
        _ensured = True


def connect_deadline() -> float:
    """Seconds a proxied connect (SOCKS handshake included) may take before it is a PrivacyError."""
    return _deadline


__all__ = [
    "LEGS",
    "Leg",
    "async_client_kwargs",
    "bounded",
    "configure",
    "connect_deadline",
    "direct_legs",
    "ensure_managed",
    "httpx_kwargs",
    "proxy_for",
    "proxy_url",
    "sync_client_kwargs",
    "websockets_kwargs",
]


def proxy_url(cfg: PrivacyConfig | None) -> str | None:
    """The SOCKS URL of the ComfyUI leg, or None when privacy (or that leg) is off."""
    return proxy_for(cfg, "comfy")


def proxy_for(cfg: PrivacyConfig | None, leg: Leg) -> str | None:
    """The ``socks5h://`` URL ``leg`` goes through, or None: privacy off, or ``privacy.legs.<leg>:
    false`` (that leg goes direct: warned about once per process). Every client asks this."""
    if cfg is None or not cfg.enabled:
        return None
    if not getattr(cfg.legs, leg):
        if leg not in _warned:
            _warned.add(leg)
            log.warning(
                "privacy is on but privacy.legs.%s is false: that traffic goes direct, not "
                "through %s",
                leg,
                _public(cfg.proxy),
            )
        return None
    from nomad.privacy.guard import normalize_proxy

    ensure_managed(cfg)
    return normalize_proxy(cfg.proxy)


def direct_legs(cfg: PrivacyConfig) -> list[Leg]:
    """The legs switched off while privacy is on (for ``nomad doctor``); [] when privacy is off."""
    return [leg for leg in LEGS if cfg.enabled and not getattr(cfg.legs, leg)]


def _public(proxy: str) -> str:
    """host:port of the proxy, never its credentials."""
    from urllib.parse import urlsplit

    parts = urlsplit(proxy)
    return f"{parts.hostname}:{parts.port or 1080}"


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
