"""Privacy guards: handshake deadlines, socks5h only, onion endpoints, SOCKS probe, PNG metadata, managed client."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpcore
import httpx
import pytest

from nomad.backends.local.process import free_port
from nomad.config.schema import PrivacyConfig
from nomad.errors import PrivacyError
from nomad.privacy import onion
from nomad.privacy.guard import check_endpoint, normalize_proxy, probe_socks
from nomad.privacy.managed import ManagedClient
from nomad.privacy.metadata import strip, strip_png_text, text_keys
from nomad.privacy.transport import async_transport, sync_transport
from nomad.testing.comfy import png_bytes
from nomad.testing.socks import stuck_socks
from nomad.testing.wait import eventually


@pytest.fixture
def silent_proxy() -> Iterator[str]:
    """A proxy that accepts and never answers."""
    with stuck_socks() as url:
        yield url


def test_sync_handshake_deadline_names_the_proxy(silent_proxy: str) -> None:
    """A proxy that never answers fails the request at the deadline (ProxyError naming it), no hang."""
    client = httpx.Client(transport=sync_transport(silent_proxy, deadline=0.5), timeout=5)
    pattern = r"SOCKS proxy 127\.0\.0\.1:\d+ .* no answer within 0\.5 s"
    with client, pytest.raises(httpx.ProxyError, match=pattern):
        client.get("http://abcdefghij.onion/system_stats")


async def test_async_handshake_deadline_names_the_proxy(silent_proxy: str) -> None:
    """The async transport has the same deadline (the ComfyUI client and workers are async)."""
    async with httpx.AsyncClient(
        transport=async_transport(silent_proxy, deadline=0.5), timeout=5
    ) as c:
        with pytest.raises(httpx.ProxyError, match=r"no answer within 0\.5 s"):
            await asyncio.wait_for(c.get("http://abcdefghij.onion/"), timeout=20)


def test_transport_goes_through_a_real_socks_proxy(tmp_path: Path) -> None:
    """Through Debian's microsocks, bound to 127.0.0.5 outbound: the server sees the proxy's address."""
    micro = shutil.which("microsocks")
    if micro is None:
        pytest.skip("microsocks not installed (apt-get install microsocks)")
    import http.server

    seen: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.client_address[0])
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = _free_port()
    import subprocess

    proc = subprocess.Popen([micro, "-i", "127.0.0.1", "-p", str(port), "-b", "127.0.0.5"])
    try:
        _wait_port(port)
        with httpx.Client(transport=sync_transport(f"socks5h://127.0.0.1:{port}")) as c:
            assert c.get(f"http://127.0.0.1:{httpd.server_port}/").text == "ok"
        assert seen == ["127.0.0.5"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        httpd.shutdown()


def test_socks5_is_rewritten_and_others_refused() -> None:
    """socks5:// becomes socks5h:// (names resolved at the proxy); http:// is not a SOCKS proxy."""
    assert normalize_proxy("socks5://127.0.0.1:9050") == "socks5h://127.0.0.1:9050"
    assert PrivacyConfig(proxy="socks5://127.0.0.1:9050").proxy == "socks5h://127.0.0.1:9050"
    with pytest.raises(PrivacyError, match="not a SOCKS5 URL"):
        normalize_proxy("http://127.0.0.1:8080")


def test_onion_endpoint_refused_without_privacy_and_checked_with_it() -> None:
    """An .onion endpoint with privacy off would go to DNS: refused; a typo'd one is caught by checksum."""
    good = onion.encode(bytes(range(32)), "onion")
    with pytest.raises(PrivacyError, match="privacy is off"):
        check_endpoint(f"http://{good}", None)
    check_endpoint(f"http://{good}", "socks5h://127.0.0.1:9050")
    bad = good[:3] + ("a" if good[3] != "a" else "b") + good[4:]
    with pytest.raises(PrivacyError, match="checksum"):
        check_endpoint(f"http://{bad}", "socks5h://127.0.0.1:9050")
    check_endpoint("http://127.0.0.1:8188", None)  # an ordinary endpoint is not our business


def test_probe_socks_tells_nothing_listening_from_silent_from_working(silent_proxy: str) -> None:
    """doctor's probe: refused port, a server that never answers, a non-SOCKS answer."""
    port = _free_port()
    assert "nothing answers" in (probe_socks(f"socks5h://127.0.0.1:{port}") or "")
    assert "did not answer" in (probe_socks(silent_proxy, timeout=0.3) or "")


def test_png_text_chunks_are_stripped_pixels_kept() -> None:
    """ComfyUI's prompt/workflow chunks go; the image data chunks are byte-identical."""
    data = png_bytes(
        b"seed", text={"prompt": '{"6": {"inputs": {"text": "secret"}}}', "workflow": "{}"}
    )
    assert set(text_keys(data)) >= {"prompt", "workflow"}
    clean = strip_png_text(data)
    assert text_keys(clean) == []
    assert b"secret" not in clean
    assert _idat(clean) == _idat(data)
    assert strip(b"RIFF....WEBP", "x.webp") == b"RIFF....WEBP"  # formats we do not parse: untouched
    assert (
        strip_png_text(b"\x89PNG\r\n\x1a\n\x00\x00") == b"\x89PNG\r\n\x1a\n\x00\x00"
    )  # broken: as is


def test_strip_metadata_follows_privacy_unless_forced() -> None:
    """auto strips when privacy is on; always/never override."""
    assert PrivacyConfig(enabled=True).strips_metadata()
    assert not PrivacyConfig(enabled=False).strips_metadata()
    assert PrivacyConfig(enabled=False, strip_metadata="always").strips_metadata()
    assert not PrivacyConfig(enabled=True, strip_metadata="never").strips_metadata()


def test_managed_client_missing_binary_is_a_privacy_error(tmp_path: Path) -> None:
    """A configured binary that does not exist: PrivacyError with the fix, nothing left running."""
    cfg = PrivacyConfig(enabled=True, mode="managed", client="tor", binary=str(tmp_path / "nope"))
    client = ManagedClient(cfg, tmp_path)
    with pytest.raises(PrivacyError, match="cannot start") as err:
        client.start(timeout=5)
    assert err.value.exit_code == 8
    assert client.pid() is None


def test_managed_client_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    """A client that dies during start-up (here: tor refusing anon's AgreeToTerms) fails in seconds, not at the deadline."""
    tor = shutil.which("tor")
    if tor is None:
        pytest.skip("tor not installed (apt-get install tor)")
    cfg = PrivacyConfig(enabled=True, mode="managed", client="tor", binary=tor)
    client = ManagedClient(cfg, tmp_path, extra_config=["AgreeToTerms 1", "DisableNetwork 1"])
    start = time.monotonic()
    with pytest.raises(PrivacyError, match="exited during start-up") as err:
        client.start(timeout=120)
    assert time.monotonic() - start < 60  # bounded by the process exit, not by the 120 s deadline
    assert "AgreeToTerms" in str(err.value)


def test_managed_client_reports_progress_and_stops_by_pid(tmp_path: Path) -> None:
    """With the network disabled the client never bootstraps: the deadline names the progress; stop kills it."""
    tor = shutil.which("tor")
    if tor is None:
        pytest.skip("tor not installed (apt-get install tor)")
    cfg = PrivacyConfig(
        enabled=True,
        mode="managed",
        client="tor",
        binary=tor,
        proxy=f"socks5h://127.0.0.1:{_free_port()}",
    )
    client = ManagedClient(cfg, tmp_path, extra_config=["DisableNetwork 1"])
    try:
        with pytest.raises(PrivacyError, match=r"did not bootstrap within 3 s: \d+%"):
            client.start(timeout=3)
        pid = client.pid()
        assert pid is not None
        assert client.bootstrap().progress < 100  # the control port answers; the network is off
    finally:
        client.stop()  # never leave a tor behind, whatever failed above
    assert client.pid() is None
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _idat(data: bytes) -> bytes:
    import struct

    pos, out = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        if data[pos + 4 : pos + 8] == b"IDAT":
            out += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    return out


def _free_port() -> int:
    return free_port()


def _wait_port(port: int, timeout: float = 10.0) -> None:
    """Until something accepts on ``port`` (a proxy the test started)."""
    eventually(lambda: _accepts(port), timeout=timeout, what=f"port {port} to accept")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


_ = httpcore  # the transports' error type comes from httpcore, mapped by httpx


def _config(tmp_path: Path, privacy: str) -> Path:
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(f"project: p\nprivacy:\n{privacy}")
    return cfg


def test_nomad_run_through_a_silent_proxy_fails_at_the_deadline_with_exit_8(
    tmp_path: Path, silent_proxy: str
) -> None:
    """Privacy on, a proxy that never answers: `nomad run` ends with the privacy exit code, naming the proxy."""
    from nomad.testing.cli import run_nomad

    cfg = _config(tmp_path, f"  enabled: true\n  proxy: {silent_proxy}\n  connect_timeout: 1\n")
    code, _, err = run_nomad(
        tmp_path / "data", "--config", str(cfg), "run", "flux_schnell",
        "--endpoint", "http://127.0.0.1:9", "--set", "prompt=x", "--json", "--timeout", "60",
    )  # fmt: skip
    assert code == 8, err
    assert "no answer within 1 s" in err and "Traceback" not in err


def test_nomad_run_refuses_an_onion_endpoint_with_privacy_off(tmp_path: Path) -> None:
    """An .onion endpoint without privacy is refused before any connect (it would go to DNS)."""
    from nomad.testing.cli import run_nomad

    host = onion.encode(bytes(range(32)), "onion")
    code, _, err = run_nomad(
        tmp_path, "run", "flux_schnell", "--endpoint", f"http://{host}", "--set", "prompt=x"
    )
    assert code == 8 and "privacy is off" in err


@pytest.mark.parametrize(("mode", "stripped"), [("always", True), ("never", False)])
def test_nomad_run_strips_png_text_chunks_when_asked(
    tmp_path: Path, mode: str, stripped: bool
) -> None:
    """`nomad run` outputs keep or lose the PNG text chunks (the double writes them, like ComfyUI) per privacy.strip_metadata."""
    from nomad.testing.cli import run_nomad
    from nomad.testing.comfy import FakeComfy

    fc = FakeComfy.start_in_thread()
    try:
        cfg = _config(tmp_path, f"  strip_metadata: {mode}\n")
        out = tmp_path / "out"
        code, _, err = run_nomad(
            tmp_path / "data", "--config", str(cfg), "run", "flux_schnell",
            "--endpoint", fc.url, "--set", "prompt=a secret prompt", "--out", str(out), "--json",
        )  # fmt: skip
    finally:
        fc.stop()
    assert code == 0, err
    (png,) = list(out.glob("*.png"))
    keys = text_keys(png.read_bytes())
    assert (keys == []) is stripped, keys


def test_doctor_probes_the_socks_port_not_just_the_binary(
    tmp_path: Path, silent_proxy: str
) -> None:
    """Privacy on: doctor fails when nothing listens or the proxy never answers, names the fix; ok when SOCKS answers."""
    from nomad.config.schema import NomadConfig
    from nomad.dev.doctor import _privacy

    closed = NomadConfig(
        privacy=PrivacyConfig(enabled=True, proxy=f"socks5h://127.0.0.1:{_free_port()}")
    )
    check = _privacy(closed, tmp_path)
    assert check.level == "fail" and "nothing answers" in check.detail and check.fix
    silent = NomadConfig(privacy=PrivacyConfig(enabled=True, proxy=silent_proxy))
    assert _privacy(silent, tmp_path).level == "fail"
    micro = shutil.which("microsocks")
    if micro is None:
        pytest.skip("microsocks not installed")
    import subprocess

    port = _free_port()
    proc = subprocess.Popen([micro, "-i", "127.0.0.1", "-p", str(port)])
    try:
        _wait_port(port)
        live = NomadConfig(privacy=PrivacyConfig(enabled=True, proxy=f"socks5h://127.0.0.1:{port}"))
        check = _privacy(live, tmp_path)
        assert check.level == "ok" and "SOCKS5 answers" in check.detail
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def test_supervised_door_is_inert_unless_managed_and_fails_clearly(tmp_path: Path) -> None:
    """serve's privacy door: nothing when off or external; a managed client that cannot start is a PrivacyError."""
    from nomad.privacy.managed import supervised

    async with supervised(PrivacyConfig(enabled=False, mode="managed"), tmp_path) as c:
        assert c is None
    async with supervised(PrivacyConfig(enabled=True, mode="external"), tmp_path) as c:
        assert c is None
    bad = PrivacyConfig(
        enabled=True, mode="managed", client="tor", binary=str(tmp_path / "missing")
    )
    with pytest.raises(PrivacyError, match="cannot start"):
        async with supervised(bad, tmp_path):
            pass


def test_prompts_do_not_reach_the_logs_even_at_debug(tmp_path: Path) -> None:
    """`nomad -vv run` with a marker prompt: the marker is in no log record (httpx, client, events)."""
    from nomad.testing.cli import run_nomad
    from nomad.testing.comfy import FakeComfy

    marker = "MARKER-7f3a-do-not-log"
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep(level=logging.DEBUG)
    names = ("", "nomad", "httpx", "httpcore", "websockets")
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    for n in names:  # earlier tests may have quietened these: listen to each one directly
        lg = logging.getLogger(n)
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    fc = FakeComfy.start_in_thread()
    try:
        code, out, err = run_nomad(
            tmp_path, "-vv", "run", "flux_schnell", "--endpoint", fc.url,
            "--set", f"prompt={marker}", "--out", str(tmp_path / "out"),
        )  # fmt: skip
    finally:
        fc.stop()
        for n, (level, disabled) in saved.items():
            lg = logging.getLogger(n)
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.disabled = disabled
    assert code == 0, err
    assert any(r.name.startswith(("httpx", "nomad")) for r in seen)  # logging was really on
    text = "\n".join(r.getMessage() for r in seen)
    assert marker not in text and marker not in err
    assert marker not in out  # the summary prints params only with --json


def test_nomad_up_health_check_goes_through_the_proxy_and_fails_at_its_deadline(
    tmp_path: Path, silent_proxy: str
) -> None:
    """`nomad up` (local backend, a real FakeComfy process) with privacy on and a silent proxy: exit 8 within the deadline, the server torn down."""
    import sys

    from nomad.testing.cli import run_nomad

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "nomad.testing.comfy",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ]
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(
        "project: p\n"
        f"image:\n  comfyui:\n    port: {port}\n"
        f"infra:\n  backend: local\n  local:\n    mode: command\n    command: {json.dumps(command)}\n"
        f"privacy:\n  enabled: true\n  proxy: {silent_proxy}\n  connect_timeout: 1\n"
        "  node:\n    publish: never\n"  # the server on loopback, reached through the proxy
    )
    code, _, err = run_nomad(
        tmp_path / "data", "--config", str(cfg), "up", "--json", "--timeout", "120"
    )
    assert code == 8, err
    assert "through the proxy" in err and "no answer within 1 s" in err
    assert (
        "did not answer /system_stats" not in err
    )  # the proxy deadline ended it, not the health timeout
    with pytest.raises(OSError):  # the ComfyUI nomad started was torn down with the failed launch
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
