"""The client's `proxy=` sends both HTTP and the WebSocket through a real SOCKS5 server (microsocks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from nomad.comfy import ComfyClient, ComfyEvent
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually

from .conftest import t2i_graph


@pytest.fixture
def socks_port() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    if shutil.which("microsocks") is None:
        pytest.skip("microsocks is not installed (apt-get install microsocks)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["microsocks", "-i", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    eventually(listening, timeout=5, interval=0.02, what="microsocks to listen")
    yield port, proc
    proc.terminate()
    proc.wait(timeout=5)


async def test_run_through_socks5h(socks_port: tuple[int, subprocess.Popen[str]]) -> None:
    """A run through socks5h:// gets its events and output; microsocks saw the connections."""
    port, proc = socks_port
    events: list[ComfyEvent] = []
    async with FakeComfy() as fc, ComfyClient(fc.url, proxy=f"socks5h://127.0.0.1:{port}") as c:
        result = await c.run(t2i_graph(), on_event=events.append, timeout=30)
    assert len(result.outputs) == 1
    assert [e.value for e in events if e.type == "progress"] == [1, 2, 3, 4]  # came over the ws
    proc.terminate()
    log = proc.communicate(timeout=5)[0]
    assert log.count(f"connected to 127.0.0.1:{fc.port}") >= 2  # HTTP + WebSocket
