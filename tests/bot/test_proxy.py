"""The bot's Telegram traffic through a real SOCKS proxy (Debian microsocks), long polling included."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from nomad.backends.local.process import free_port
from nomad.testing.botapi import BotApiStub
from nomad.testing.wait import eventually

ALICE = 1001
OUT_IP = "127.0.0.5"  # microsocks binds its outgoing connections here: the stub sees it as the peer


@pytest.fixture
def socks() -> Iterator[str]:
    """microsocks on a free loopback port, its outgoing side bound to 127.0.0.5."""
    micro = shutil.which("microsocks")
    if micro is None:
        pytest.skip("microsocks not installed (apt-get install microsocks)")
    port = free_port()
    proc = subprocess.Popen([micro, "-i", "127.0.0.1", "-p", str(port), "-b", OUT_IP])
    eventually(lambda: _accepts(port), timeout=10, what="microsocks to listen")
    yield f"socks5h://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=5)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


async def test_long_polling_and_replies_go_through_the_proxy(
    botapi: BotApiStub, make_bot: Any, socks: str
) -> None:
    """With a proxy every Bot API call — getMe, getUpdates, sendMessage — arrives from the proxy's side."""
    async with make_bot(app_kwargs={"proxy": socks}):
        botapi.user_sends_text(ALICE, "/help")
        await botapi.wait_for(lambda c: c.method == "sendMessage")
    methods = {c.method for c in botapi.calls}
    assert {"getMe", "getUpdates", "sendMessage"} <= methods
    peers = {c.peer for c in botapi.calls}
    assert peers == {OUT_IP}, peers


async def test_without_a_proxy_the_bot_connects_directly(botapi: BotApiStub, make_bot: Any) -> None:
    """The control: no proxy configured, the stub sees the bot's own loopback address."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/help")
        await botapi.wait_for(lambda c: c.method == "sendMessage")
    assert {c.peer for c in botapi.calls} == {"127.0.0.1"}
