"""/qwen edits: the replied-to photo, a captioned photo, or the user's last result; concurrency."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub

BOTH_QUEUES = pytest.mark.parametrize("queue", ["sqlite", "postgres"], indirect=True)
ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000
RESULT = b"\x89PNG\r\n\x1a\n" + b"first-result" * 40
USER_PHOTO = b"\xff\xd8\xff\xe0" + b"holiday-photo" * 40


async def produce_result(botapi: BotApiStub, queue: Any, storage: Any) -> tuple[str, Any]:
    """Alice makes one image and receives it; returns (output key, the sendPhoto call)."""
    botapi.user_sends_text(ALICE, "/f an astronaut")
    await botapi.wait_for_text(ALICE, "⏳ queued")
    [job] = queue.list(user=str(ALICE))
    leased = queue.lease("w")
    key = f"outputs/{job.id}/0.png"
    storage.put_bytes(key, RESULT)
    queue.complete(job.id, leased.lease_token, outputs=[key])
    photo = await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
    await botapi.wait_for_text(ALICE, "✅ done")
    return key, photo


def edit_job(queue: Any) -> Any:
    [job] = queue.list(user=str(ALICE), status=[JobStatus.QUEUED])
    assert job.workflow == "qwen_image_edit"
    return job


@BOTH_QUEUES
async def test_qwen_chains_on_last_result(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """/qwen with no photo edits the user's last result: its storage key is the job input."""
    async with make_bot():
        key, _ = await produce_result(botapi, queue, storage)
        mark = botapi.mark()
        botapi.user_sends_text(ALICE, "/qwen put a t-shirt on him")
        await botapi.wait_for_text(ALICE, "⏳ queued", since=mark)
        job = edit_job(queue)
    assert job.inputs == {"image": key}
    assert job.params["prompt"] == "put a t-shirt on him"


async def test_qwen_reply_to_bot_photo_uses_original(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """Replying /qwen to the bot's photo edits the stored original, not a recompressed copy."""
    async with make_bot():
        key, photo = await produce_result(botapi, queue, storage)
        mark = botapi.mark()
        botapi.user_sends_text(ALICE, "/qwen make it night", reply_to=photo.result["message_id"])
        await botapi.wait_for_text(ALICE, "⏳ queued", since=mark)
        job = edit_job(queue)
    assert job.inputs == {"image": key}
    assert botapi.calls_to("getFile") == []


async def test_photo_with_qwen_caption(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """A photo captioned /qwen is downloaded via getFile and stored; the job input holds its bytes."""
    async with make_bot():
        botapi.user_sends_photo(ALICE, USER_PHOTO, caption="/qwen add a hat --seed 5")
        await botapi.wait_for_text(ALICE, "⏳ queued")
        job = edit_job(queue)
    assert storage.get_bytes(job.inputs["image"]) == USER_PHOTO
    assert job.params["seed"] == 5 and len(botapi.calls_to("getFile")) == 1


async def test_reply_to_user_photo(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """/qwen replying to a photo the user sent earlier edits that photo."""
    async with make_bot():
        photo = botapi.user_sends_photo(ALICE, USER_PHOTO)
        await botapi.wait_for_text(ALICE, "caption like")
        botapi.user_sends_text(ALICE, "/qwen make it sepia", reply_to=photo["message_id"])
        await botapi.wait_for_text(ALICE, "⏳ queued")
        job = edit_job(queue)
    assert storage.get_bytes(job.inputs["image"]) == USER_PHOTO


class GatedStorage:
    """Real storage whose put_bytes waits for a gate (holds one user's handler mid-flight)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        self.entered.set()
        assert self.gate.wait(20), "gate never opened"
        return str(self.inner.put_bytes(key, data, content_type))

    def get_bytes(self, key: str) -> bytes:
        return bytes(self.inner.get_bytes(key))


async def test_two_users_at_once(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """While Alice's job runs and her next request is stuck mid-handler, Bob's /status is answered."""
    gated = GatedStorage(storage)
    async with make_bot(storage=gated):
        botapi.user_sends_text(ALICE, "/f a long video-ish job")
        await botapi.wait_for_text(ALICE, "⏳ queued")
        running = queue.lease("w")
        queue.heartbeat(running.id, running.lease_token, progress=0.3)
        await botapi.wait_for_text(ALICE, "running · 30%")
        botapi.user_sends_photo(ALICE, USER_PHOTO, caption="/qwen add a hat")
        assert await asyncio.to_thread(gated.entered.wait, 20)
        botapi.user_sends_text(BOB, "/status")
        answer = await botapi.wait_for_text(BOB, "Queue:")
        assert "no jobs in flight" in answer.params["text"]
        assert not gated.gate.is_set()  # Alice's handler is still blocked right now
        gated.gate.set()
        await botapi.wait_for(lambda c: len(queue.list(user=str(ALICE))) == 2)
