"""Privacy seam: onion/anon addresses, client config, and real SOCKS5 routing."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from aiohttp import web

from nomad.config.schema import HiddenService, PrivacyConfig
from nomad.errors import PrivacyError
from nomad.privacy import bounded, httpx_kwargs, onion, proxy_url, websockets_kwargs
from nomad.privacy.client import render_config, verify_config
from nomad.testing.wait import eventually

KEY = bytes(range(32))
BIND_IP = "127.0.0.5"  # microsocks binds its outgoing connections here: proof of routing


def test_address_round_trip_both_suffixes() -> None:
    """An address encoded for .anon or .onion parses back to the same key."""
    for suffix in ("anon", "onion"):
        host = onion.encode(KEY, suffix)
        assert len(host) == 56 + 1 + len(suffix)
        assert onion.parse(host).pubkey == KEY


def test_address_checksum_is_suffix_specific() -> None:
    """A .onion address relabelled .anon fails: the checksum constant differs per network."""
    host = onion.encode(KEY, "onion")
    with pytest.raises(PrivacyError, match="checksum"):
        onion.parse(host.replace(".onion", ".anon"))


def test_address_typo_detected() -> None:
    """One changed character is caught by the checksum."""
    host = onion.encode(KEY, "anon")
    bad = ("b" if host[5] != "b" else "c").join([host[:5], host[6:]])
    with pytest.raises(PrivacyError):
        onion.parse(bad)


def test_read_hostname_missing(tmp_path: Path) -> None:
    """A hidden-service dir without hostname says so, with a hint."""
    with pytest.raises(PrivacyError, match="does not exist yet"):
        onion.read_hostname(tmp_path)


def test_render_config_anon_and_tor(tmp_path: Path) -> None:
    """anon gets AgreeToTerms; tor never does; hidden services map to loopback targets."""
    hs = [HiddenService(name="comfy", port=80, target="127.0.0.1:8188")]
    anon = render_config(PrivacyConfig(enabled=True, client="anon", hidden_services=hs), tmp_path)
    tor = render_config(PrivacyConfig(enabled=True, client="tor", hidden_services=hs), tmp_path)
    assert "AgreeToTerms 1" in anon and "AgreeToTerms" not in tor
    assert f"HiddenServiceDir {tmp_path / 'privacy' / 'hs' / 'comfy'}" in tor
    assert "HiddenServicePort 80 127.0.0.1:8188" in tor
    assert "SocksPort 127.0.0.1:9050" in tor


def test_hidden_service_must_target_loopback(tmp_path: Path) -> None:
    """Exposing a non-local address as a hidden service is refused."""
    cfg = PrivacyConfig(hidden_services=[HiddenService(name="x", target="10.0.0.1:80")])
    with pytest.raises(PrivacyError, match="loopback"):
        render_config(cfg, tmp_path)


def test_proxy_off_is_explicit() -> None:
    """With privacy off no proxy is used, and websockets is told so explicitly."""
    assert proxy_url(PrivacyConfig(enabled=False)) is None
    assert websockets_kwargs(None) == {"proxy": None}
    assert httpx_kwargs(None) == {"trust_env": False}


@pytest.mark.skipif(shutil.which("tor") is None, reason="Debian tor not installed (.ci/run installs it)")
def test_real_tor_verifies_generated_config(tmp_path: Path) -> None:
    """The real tor binary accepts the config nomad writes (--verify-config)."""
    cfg = PrivacyConfig(
        enabled=True, client="tor", proxy=f"socks5h://127.0.0.1:{_free_port()}",
        hidden_services=[HiddenService(name="comfy", target="127.0.0.1:8188")],
    )
    assert verify_config(cfg, tmp_path).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Bounded wait (≤ 5 s) until the proxy accepts connections."""

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail("microsocks exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    eventually(listening, timeout=5, interval=0.02, what="microsocks to listen")


@pytest.fixture()
def microsocks() -> Iterator[str]:
    """A real SOCKS5 proxy (Debian microsocks) on loopback, binding outgoing traffic to 127.0.0.5."""
    if shutil.which("microsocks") is None:
        pytest.skip("microsocks not installed (.ci/run installs it)")
    port = _free_port()
    proc = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(port), "-b", BIND_IP],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield f"socks5h://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture()
async def peer_server() -> AsyncIterator[str]:
    """A loopback HTTP+WS server that answers with the peer address it saw."""

    async def http(request: web.Request) -> web.Response:
        return web.Response(text=request.remote or "")

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str(request.remote or "")
        await sock.close()
        return sock

    app = web.Application()
    app.router.add_get("/", http)
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"127.0.0.1:{port}"
    await runner.cleanup()


async def test_http_and_ws_go_through_the_proxy(microsocks: str, peer_server: str) -> None:
    """HTTP and WebSocket clients built from the privacy kwargs really traverse the SOCKS proxy."""
    async with httpx.AsyncClient(**httpx_kwargs(None)) as direct:
        assert (await direct.get(f"http://{peer_server}/")).text == "127.0.0.1"
    async with httpx.AsyncClient(**httpx_kwargs(microsocks)) as via:
        resp = await bounded(via.get(f"http://{peer_server}/"), 10, "proxy test")
        assert resp.text == BIND_IP
    async with websockets.connect(f"ws://{peer_server}/ws", **websockets_kwargs(microsocks)) as ws:
        assert await asyncio.wait_for(ws.recv(), 10) == BIND_IP


async def test_bounded_turns_hang_into_error() -> None:
    """A connect that never answers becomes a PrivacyError with a hint, not a hang."""
    with pytest.raises(PrivacyError, match="no answer within"):
        await bounded(asyncio.Event().wait(), 0.05, "socks handshake")


def test_env_proxy_vars_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx clients built by nomad ignore ALL_PROXY/HTTP_PROXY from the environment."""
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1")
    with httpx.Client(**httpx_kwargs(None)) as c:
        assert c._trust_env is False
    assert os.environ["ALL_PROXY"]


def test_verify_config_with_a_missing_binary_is_a_privacy_error(tmp_path: Path) -> None:
    """privacy.binary pointing nowhere gives a PrivacyError naming it, not a traceback."""
    with pytest.raises(PrivacyError, match="cannot run /nonexistent/anon"):
        verify_config(PrivacyConfig(enabled=True), tmp_path, binary="/nonexistent/anon")
