"""Refusals: each gets a clear reply and queues nothing (GPUs cost money)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub

BOTH_QUEUES = pytest.mark.parametrize("queue", ["sqlite", "postgres"], indirect=True)
ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000


async def replies(botapi: BotApiStub, chat: int, prefix: str, count: int) -> None:
    """Wait until the bot has sent ``count`` messages starting with ``prefix`` to ``chat``."""

    def enough(_: Any) -> bool:
        sent = [c for c in botapi.calls_to("sendMessage") if str(c.params["chat_id"]) == str(chat)]
        return sum(str(c.params["text"]).startswith(prefix) for c in sent) >= count

    await botapi.wait_for(enough)


def jobs(queue: Any) -> int:
    return sum(queue.counts().values())


async def test_not_on_allowlist(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A user not on the allowlist is refused politely and nothing is queued."""
    async with make_bot():
        botapi.user_sends_text(MALLORY, "/f an astronaut")
        call = await botapi.wait_for_text(MALLORY, "allowlist")
    assert "Nothing was queued" in call.params["text"]
    assert jobs(queue) == 0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("/f", "prompt is empty"),
        ("/f    --seed 3", "prompt is empty"),
        ("/f a cat --bogus 1", "bogus"),
        ("/f a cat --steps 500", "steps"),
        ("/f a cat --seed", "needs a value"),
    ],
)
async def test_bad_input_is_explained(
    botapi: BotApiStub, make_bot: Any, queue: Any, text: str, needle: str
) -> None:
    """Empty prompt, unknown option, out-of-range value, missing value: clear reply, no job."""
    async with make_bot():
        botapi.user_sends_text(ALICE, text)
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert needle in call.params["text"]
    assert jobs(queue) == 0


async def test_pdf_instead_of_photo(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A PDF sent with /qwen is refused as not an image; nothing is queued."""
    async with make_bot():
        botapi.user_sends_document(
            ALICE,
            b"%PDF-1.7 fake",
            file_name="cv.pdf",
            mime_type="application/pdf",
            caption="/qwen make it blue",
        )
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "not an image" in call.params["text"] and "application/pdf" in call.params["text"]
    assert jobs(queue) == 0


async def test_30mb_photo(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A 30 MB photo is over the bot download limit: refused before any download."""
    async with make_bot():
        botapi.user_sends_photo(ALICE, os.urandom(30 * 1024 * 1024), caption="/qwen add a hat")
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "too big" in call.params["text"] and "20 MB" in call.params["text"]
    assert botapi.calls_to("getFile", ok_only=False) == []
    assert jobs(queue) == 0


async def test_photo_without_caption(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A bare photo gets told how to ask for an edit; nothing is queued."""
    async with make_bot():
        botapi.user_sends_photo(ALICE, b"\xff\xd8jpeg")
        await botapi.wait_for_text(ALICE, "caption like /qwen")
    assert jobs(queue) == 0


async def test_edit_with_no_image(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """/qwen with no photo and no previous result says how to give one."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/qwen put a hat on him")
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "reply to a photo" in call.params["text"]
    assert jobs(queue) == 0


@BOTH_QUEUES
async def test_in_flight_quota(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A third job while two are in flight is refused with what to do; the two stay queued."""
    async with make_bot():
        for n in (1, 2):
            botapi.user_sends_text(ALICE, f"/f cat number {n}")
            await botapi.wait_for_text(ALICE, f"queued #{n}")
        botapi.user_sends_text(ALICE, "/f one too many")
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "in flight" in call.params["text"]
    assert jobs(queue) == 2


@BOTH_QUEUES
async def test_daily_quota_says_when_it_resets(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """Over the per-day quota the refusal names the reset time; nothing more is queued."""
    async with make_bot():
        for n in range(5):
            botapi.user_sends_text(ALICE, f"/f cat {n}")
            await replies(botapi, ALICE, "⏳ queued", n + 1)
            for job in queue.list(user=str(ALICE), status=[JobStatus.QUEUED]):
                queue.cancel(job.id)
        botapi.user_sends_text(ALICE, "/f the sixth")
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "resets at" in call.params["text"] and "UTC" in call.params["text"]
    assert jobs(queue) == 5
