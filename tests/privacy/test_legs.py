"""privacy.legs: registry, S3, downloads and weight pulls through a real SOCKS proxy (microsocks).

Route proof: microsocks binds its outgoing side to 127.0.0.5, and a recording TCP relay
in front of the real server (distribution registry, SeaweedFS, an HTTP file server) notes
the peer of every connection: 127.0.0.5 means through the proxy, 127.0.0.1 means direct.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import logging
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.backends.local.process import free_port
from nomad.config.schema import NomadConfig
from nomad.errors import PrivacyError
from nomad.privacy import direct_legs, proxy_for
from nomad.testing.socks import stuck_socks
from nomad.testing.wait import eventually

OUT_IP = "127.0.0.5"


class Relay:
    """A TCP forwarder on 127.0.0.1 that records the peer address of every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.peers: list[str] = []
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.srv.settimeout(0.2)
        self.port = self.srv.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(peer[0])
            up = socket.create_connection(self.target)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.srv.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def socks() -> Iterator[str]:
    """microsocks on a free loopback port, its outgoing side bound to 127.0.0.5."""
    micro = shutil.which("microsocks")
    if micro is None:
        pytest.skip("microsocks not installed (apt-get install microsocks)")
    port = free_port()
    proc = subprocess.Popen(
        [micro, "-i", "127.0.0.1", "-p", str(port), "-b", OUT_IP], stderr=subprocess.DEVNULL
    )
    eventually(lambda: _accepts(port), timeout=10, what="microsocks to listen")
    yield f"socks5h://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=5)


@pytest.fixture
def silent() -> Iterator[str]:
    """A proxy that accepts and never answers: a wedged or still-bootstrapping proxy."""
    with stuck_socks() as url:
        yield url


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _hostport(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    return host, int(port)


@pytest.fixture
def relay() -> Iterator[Any]:
    """Make relays in front of (host, port) targets; all closed after the test."""
    made: list[Relay] = []

    def make(url: str) -> Relay:
        r = Relay(_hostport(url))
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _cfg(privacy: dict[str, Any], **rest: Any) -> NomadConfig:
    return NomadConfig.model_validate({"privacy": privacy, **rest})


# -- the helper every client asks ------------------------------------------------------


def test_proxy_for_each_leg_on_by_default_off_when_privacy_off(caplog: Any) -> None:
    """Privacy on: every leg gets the socks5h URL; privacy off: none does, and nothing is warned."""
    on = _cfg({"enabled": True, "proxy": "socks5://127.0.0.1:9050"}).privacy
    off = _cfg({"enabled": False}).privacy
    for leg in ("comfy", "telegram", "registry", "s3", "downloads", "webhooks"):
        assert proxy_for(on, leg) == "socks5h://127.0.0.1:9050"  # socks5:// rewritten
        assert proxy_for(off, leg) is None
    assert direct_legs(on) == [] and direct_legs(off) == []


def test_a_leg_switched_off_goes_direct_and_is_warned_once(caplog: Any) -> None:
    """privacy.legs.s3: false → no proxy for S3, one warning naming the leg, doctor lists it."""
    pv = _cfg({"enabled": True, "legs": {"s3": False}}).privacy
    import nomad.privacy as seam

    seam._warned.discard("s3")
    with caplog.at_level(logging.WARNING, logger="nomad.privacy"):
        assert proxy_for(pv, "s3") is None
        assert proxy_for(pv, "s3") is None
        assert proxy_for(pv, "registry") == pv.proxy
    warnings = [r.getMessage() for r in caplog.records if "privacy.legs.s3" in r.getMessage()]
    assert len(warnings) == 1 and "goes direct" in warnings[0]
    assert direct_legs(pv) == ["s3"]


def test_an_unknown_leg_key_is_a_config_error() -> None:
    """A typo under privacy.legs is refused, not silently ignored (strict config)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="regsitry"):
        _cfg({"enabled": True, "legs": {"regsitry": False}})


# -- registry ---------------------------------------------------------------------------


def _push(stack: Any, cfg: NomadConfig, tmp_path: Path, repo: str) -> Any:
    from nomad.dev.defaults import resolve_registry
    from nomad.images._base import write_base_layout
    from nomad.registry import push_image

    layout = tmp_path / "layout"
    write_base_layout(layout, "t1")
    reg = resolve_registry(cfg, tmp_path / "data")
    return push_image(
        url=reg.url,
        repository=repo,
        tag="t1",
        layout_dir=layout,
        data_dir=tmp_path / "data",
        insecure=True,
        proxy=reg.proxy_to(reg.url, cfg),
    )


@pytest.mark.integration
def test_registry_push_goes_through_the_proxy(
    stack: Any, socks: str, relay: Any, tmp_path: Path
) -> None:
    """Privacy on: every connection of a push to a configured registry arrives from the proxy."""
    front = relay(stack.registry_url)
    cfg = _cfg(
        {"enabled": True, "proxy": socks},
        registry={"url": f"http://127.0.0.1:{front.port}", "insecure": True},
    )
    result = _push(stack, cfg, tmp_path, "legs/via-proxy")
    assert result.digest.startswith("sha256:")
    assert front.peers and set(front.peers) == {OUT_IP}, front.peers


@pytest.mark.integration
def test_registry_leg_off_pushes_direct(stack: Any, socks: str, relay: Any, tmp_path: Path) -> None:
    """privacy.legs.registry: false → the same push connects from nomad's own address."""
    front = relay(stack.registry_url)
    cfg = _cfg(
        {"enabled": True, "proxy": socks, "legs": {"registry": False}},
        registry={"url": f"http://127.0.0.1:{front.port}", "insecure": True},
    )
    _push(stack, cfg, tmp_path, "legs/direct")
    assert front.peers and set(front.peers) == {"127.0.0.1"}, front.peers


def test_registry_push_through_a_silent_proxy_is_a_privacy_error(
    silent: str, tmp_path: Path
) -> None:
    """A proxy that never answers ends the push with a RegistryError/PrivacyError naming the proxy."""
    from nomad.errors import NomadError
    from nomad.images._base import write_base_layout
    from nomad.privacy import configure
    from nomad.registry import push_image

    write_base_layout(tmp_path / "layout", "t1")
    configure(_cfg({"enabled": True, "connect_timeout": 0.5}).privacy)
    try:
        with pytest.raises(NomadError, match=r"127\.0\.0\.1:\d+.*no answer within 0\.5 s"):
            push_image(
                url="http://registry.invalid:5000",
                repository="legs/silent",
                tag="t1",
                layout_dir=tmp_path / "layout",
                data_dir=tmp_path / "data",
                proxy=silent,
            )
    finally:
        configure(_cfg({}).privacy)


# -- S3 ---------------------------------------------------------------------------------


def _s3_cfg(stack: Any, front: Relay, privacy: dict[str, Any], bucket: str) -> NomadConfig:
    return _cfg(
        privacy,
        storage={
            "endpoint_url": f"http://127.0.0.1:{front.port}",
            "bucket": bucket,
            "access_key_id": stack.access_key,
            "secret_access_key": stack.secret_key,
        },
    )


@pytest.mark.integration
def test_s3_goes_through_the_proxy(stack: Any, socks: str, relay: Any, tmp_path: Path) -> None:
    """Privacy on: boto3's connections (create, put, get, multipart upload) arrive from the proxy."""
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    front = relay(stack.s3_endpoint)
    cfg = _s3_cfg(stack, front, {"enabled": True, "proxy": socks}, "legs-s3-proxy")
    store = Storage(resolve_storage(cfg, tmp_path))
    store.ensure_bucket()
    store.put_bytes("a.txt", b"through the proxy")
    assert store.get_bytes("a.txt") == b"through the proxy"
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 << 20))
    store.put_file("big.bin", big)
    assert store.exists("big.bin")
    assert front.peers and set(front.peers) == {OUT_IP}, front.peers


@pytest.mark.integration
def test_s3_leg_off_goes_direct(stack: Any, socks: str, relay: Any, tmp_path: Path) -> None:
    """privacy.legs.s3: false → boto3 connects from nomad's own address."""
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    front = relay(stack.s3_endpoint)
    privacy = {"enabled": True, "proxy": socks, "legs": {"s3": False}}
    store = Storage(resolve_storage(_s3_cfg(stack, front, privacy, "legs-s3-direct"), tmp_path))
    store.ensure_bucket()
    store.put_bytes("a.txt", b"direct")
    assert front.peers and set(front.peers) == {"127.0.0.1"}, front.peers


def test_s3_through_a_silent_proxy_is_a_privacy_error(silent: str) -> None:
    """A proxy that never answers: the S3 call fails with PrivacyError naming the proxy, no hang."""
    from nomad.storage import S3Settings, Storage

    settings = S3Settings(
        "http://s3.invalid:8333", "us-east-1", "b", "r", "k", "s", proxy=silent, proxy_deadline=0.5
    )
    with pytest.raises(PrivacyError, match=r"SOCKS proxy 127\.0\.0\.1:\d+ .* within 0\.5 s"):
        Storage(settings, attempts=1).put_bytes("k", b"x")


# -- model downloads and weight pulls (stdlib http.client) ---------------------------------


@pytest.fixture
def files() -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    """An HTTP file server on loopback: (base URL, files by path, peers seen)."""
    content: dict[str, bytes] = {}
    peers: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            peers.append(self.client_address[0])
            body = content.get(self.path, b"")
            self.send_response(200 if self.path in content else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", content, peers
    server.shutdown()
    server.server_close()
    t.join(timeout=5)


@pytest.mark.parametrize("leg_on", [True, False])
def test_build_model_download_follows_the_downloads_leg(
    socks: str, files: Any, tmp_path: Path, leg_on: bool
) -> None:
    """`nomad build`'s URL fetch goes through the proxy with the leg on, direct with it off."""
    from nomad.images import ModelCache
    from nomad.images._fetch import ModelSpec, fetch_models

    base, content, peers = files
    data = b"weights" * 1000
    content["/m.safetensors"] = data
    pv = _cfg({"enabled": True, "proxy": socks, "legs": {"downloads": leg_on}}).privacy
    spec = ModelSpec(
        "checkpoints/m.safetensors", f"{base}/m.safetensors", hashlib.sha256(data).hexdigest()
    )
    [got] = fetch_models([spec], ModelCache(tmp_path), proxy=proxy_for(pv, "downloads"))
    assert got.sha256 == spec.sha256
    assert set(peers) == ({OUT_IP} if leg_on else {"127.0.0.1"}), peers


def test_weight_pull_connection_goes_through_the_proxy(socks: str, files: Any) -> None:
    """The node fetcher's stdlib connection, routed, reaches the server from the proxy's side."""
    from nomad.privacy.socks import route_http_client

    base, content, peers = files
    content["/blob"] = b"abc"
    conn = http.client.HTTPConnection(base.split("://")[1], timeout=10)
    route_http_client(conn, socks, 5.0)
    conn.request("GET", "/blob")
    assert conn.getresponse().read() == b"abc"
    conn.close()
    assert peers == [OUT_IP]


def test_weight_pull_through_a_silent_proxy_is_a_privacy_error(silent: str) -> None:
    """The stdlib route has the same handshake deadline: PrivacyError naming the proxy."""
    from nomad.privacy.socks import route_http_client

    conn = http.client.HTTPConnection("blobs.invalid", timeout=10)
    route_http_client(conn, silent, 0.5)
    with pytest.raises(PrivacyError, match=r"no answer within 0\.5 s"):
        conn.request("GET", "/blob")
