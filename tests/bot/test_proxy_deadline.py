"""The bot's own HTTP client through a SOCKS proxy that accepts and never answers: exit 8, no hang."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from nomad.errors import PrivacyError
from nomad.testing.botapi import BotApiStub
from nomad.testing.socks import stuck_socks

DEADLINE = 0.5


@pytest.fixture
def silent() -> Iterator[str]:
    """A proxy that accepts and never answers (an anon still bootstrapping, a wedged Tor)."""
    with stuck_socks() as url:
        yield url


async def test_bot_start_through_a_silent_proxy_is_a_privacy_error(
    botapi: BotApiStub, make_bot: Any, silent: str
) -> None:
    """getMe through a silent proxy fails at the handshake deadline with PrivacyError naming it."""
    kwargs = {"proxy": silent, "proxy_deadline": DEADLINE}
    with pytest.raises(PrivacyError, match=r"SOCKS proxy 127\.0\.0\.1:\d+ .* within 0\.5 s"):
        async with make_bot(app_kwargs=kwargs):
            pass
    assert botapi.calls == []  # nothing reached the Bot API double


async def test_bot_start_with_nothing_listening_at_the_proxy_is_a_privacy_error(
    botapi: BotApiStub, make_bot: Any
) -> None:
    """A proxy port nobody listens on is also the privacy error (the first hop is the proxy)."""
    from nomad.backends.local.process import free_port

    dead = f"socks5h://127.0.0.1:{free_port()}"
    with pytest.raises(PrivacyError, match="nothing answers at SOCKS proxy"):
        async with make_bot(app_kwargs={"proxy": dead, "proxy_deadline": DEADLINE}):
            pass


def test_check_token_through_a_silent_proxy_exits_8(silent: str) -> None:
    """`nomad bot check`'s getMe has the same deadline: PrivacyError (exit 8), not a hang."""
    from nomad.config.schema import NomadConfig
    from nomad_bot.run import check_token

    cfg = NomadConfig.model_validate(
        {
            "privacy": {"enabled": True, "proxy": silent, "connect_timeout": DEADLINE},
            "bot": {"token": "123:abc", "base_url": "http://bot.invalid/bot"},
        }
    )
    with pytest.raises(PrivacyError) as info:
        check_token(cfg)
    assert info.value.exit_code == 8


def test_the_bot_request_never_reads_proxy_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Direct (privacy off): HTTPS_PROXY/ALL_PROXY in the environment are ignored."""
    from nomad_bot.route import request

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.9:1")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.9:1")
    client = request(None)._client
    assert client._mounts == {} and client._trust_env is False
