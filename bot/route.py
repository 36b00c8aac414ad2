"""The bot's HTTP route: python-telegram-bot's httpx client on nomad's transport.

PTB builds its own ``httpx.AsyncClient``; given ``proxy=`` it uses httpx's
SOCKS support, whose handshake has no timeout — a proxy that accepts and never
answers (an ``anon`` still bootstrapping) hangs ``getMe`` for ever. So the bot
never hands PTB a proxy URL: it hands it an ``HTTPXRequest`` whose client runs
on :func:`nomad.privacy.transport.async_transport` (handshake deadline =
``privacy.connect_timeout``), and, direct or not, a client that never reads
proxy environment variables. :func:`proxy_failure` turns PTB's ``NetworkError``
from a dead proxy into nomad's :class:`~nomad.errors.PrivacyError` (exit 8).
"""

from __future__ import annotations

from typing import Any

from telegram.request import HTTPXRequest

from nomad.errors import PrivacyError

_HINT = "is the anon/tor client running and bootstrapped? check `nomad doctor`"


def request(
    proxy: str | None, deadline: float | None = None, *, pool_size: int = 256, **timeouts: Any
) -> HTTPXRequest:
    """An HTTPXRequest through ``proxy`` (handshake under ``deadline``), or direct; never env proxies."""
    from nomad import privacy

    kwargs: dict[str, Any] = {"trust_env": False}
    if proxy:
        from nomad.privacy.transport import async_transport

        seconds = privacy.connect_deadline() if deadline is None else deadline
        kwargs["transport"] = async_transport(proxy, seconds, max_connections=pool_size)
    return HTTPXRequest(connection_pool_size=pool_size, httpx_kwargs=kwargs, **timeouts)


def proxy_failure(exc: BaseException, proxy: str | None) -> PrivacyError | None:
    """The PrivacyError behind a PTB error when the proxy (not Telegram) failed, else None."""
    if proxy is None:
        return None
    import httpx

    from nomad.privacy.socks import proxy_address

    host, port = proxy_address(proxy)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, httpx.ProxyError):  # the handshake deadline, or a SOCKS refusal
            return PrivacyError(f"Telegram Bot API via the proxy: {e}", hint=_HINT)
        if isinstance(e, httpx.ConnectError):  # with a proxy, the first hop is always the proxy
            return PrivacyError(
                f"Telegram Bot API via the proxy: nothing answers at SOCKS proxy {host}:{port} ({e})",
                hint=_HINT,
            )
        e = e.__cause__ or e.__context__
    return None


def raise_proxy_failure(exc: BaseException, proxy: str | None) -> None:
    """Raise :func:`proxy_failure`'s PrivacyError (from ``exc``) when there is one; else return."""
    failure = proxy_failure(exc, proxy)
    if failure is not None:
        raise failure from exc
