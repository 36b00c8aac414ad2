"""Webhook mode: PTB's webhook server registers its URL and secret; only Telegram's secret gets in."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import SecretStr

from nomad.config.schema import WebhookConfig
from nomad.testing.botapi import BotApiStub

ALICE = 1001


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_with_secret_token(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """setWebhook carries the secret; a POST without it is refused (403) and queues nothing."""
    pytest.importorskip("tornado")
    port = free_port()
    hook = WebhookConfig(
        url=f"http://127.0.0.1:{port}/tg-hook",
        listen="127.0.0.1",
        port=port,
        secret_token=SecretStr("s3cret-Token_1"),
    )
    async with make_bot(webhook=hook):
        assert botapi.webhook == {"url": hook.url, "secret_token": "s3cret-Token_1"}
        assert await botapi.webhook_text(ALICE, "/f a forged job", secret_token="wrong") == 403
        assert await botapi.webhook_text(ALICE, "/f a fox in the snow") == 200
        await botapi.wait_for_text(ALICE, "⏳ queued #1")
    [job] = queue.list(user=str(ALICE))
    assert job.params["prompt"] == "a fox in the snow"
