"""Checks that keep a privacy setting from leaking: proxy scheme, onion endpoints, proxy liveness.

- ``socks5://`` makes some clients (websockets) resolve the host with the
  system resolver first, so an ``.onion`` name goes to DNS; only ``socks5h``
  is used, and a ``socks5://`` URL is rewritten to it.
- A hidden-service endpoint (``.onion``/``.anon``) is checked with its
  checksum, and refused when privacy is off (it would go to DNS and fail).
- :func:`probe_socks` does the SOCKS5 greeting, so ``nomad doctor`` says
  "nothing listens on 9050" instead of "client found".
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from nomad.errors import PrivacyError
from nomad.privacy import onion


def normalize_proxy(url: str) -> str:
    """``socks5h://…`` as given; ``socks5://…`` rewritten to ``socks5h://…``; anything else refused."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() == "socks5h":
        return url
    if sep and scheme.lower() == "socks5":
        return "socks5h://" + rest
    raise PrivacyError(
        f"proxy {url!r} is not a SOCKS5 URL",
        hint="use socks5h://127.0.0.1:9050 (names resolved by the proxy, never by DNS)",
    )


def is_hidden_service(url: str) -> bool:
    """True for an ``.onion``/``.anon`` host."""
    host = (urlsplit(url if "://" in url else f"http://{url}").hostname or "").lower()
    return host.endswith((".onion", ".anon"))


def check_endpoint(url: str, proxy: str | None) -> None:
    """Validate a hidden-service endpoint and refuse it when no proxy is in use."""
    if not is_hidden_service(url):
        return
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    onion.parse(host)  # checksum: a typo is caught here, not after a 2-minute circuit build
    if proxy is None:
        raise PrivacyError(
            f"{host} is a hidden-service address but privacy is off: it would go to DNS",
            hint="set privacy.enabled: true (or NOMAD_PROXY=socks5h://127.0.0.1:9050)",
        )


def probe_socks(proxy: str, timeout: float = 3.0) -> str | None:
    """None when a SOCKS5 server answers the greeting at ``proxy``, else what went wrong."""
    parts = urlsplit(proxy)
    host, port = parts.hostname or "127.0.0.1", parts.port or 1080
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"\x05\x01\x00")  # version 5, one method: no authentication
            reply = sock.recv(2)
    except TimeoutError:
        return f"{host}:{port} accepted but did not answer the SOCKS5 greeting within {timeout:g} s"
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
    if reply != b"\x05\x00":
        return f"{host}:{port} is not a SOCKS5 proxy without authentication (answered {reply!r})"
    return None
