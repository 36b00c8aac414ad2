"""Status updates and delivery: progress edits, Telegram limits, retries, restarts."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub

BOTH_QUEUES = pytest.mark.parametrize("queue", ["sqlite", "postgres"], indirect=True)
ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000
PNG = b"\x89PNG\r\n\x1a\n" + b"result" * 50


def lease(queue: Any, job_id: str) -> Any:
    job = queue.lease("test-worker")
    assert job is not None and job.id == job_id
    return job


def store_and_complete(queue: Any, storage: Any, job: Any, data: bytes, name: str) -> str:
    key = f"outputs/{job.id}/{name}"
    storage.put_bytes(key, data)
    assert queue.complete(job.id, job.lease_token, outputs=[key])
    return key


async def queued_job(botapi: BotApiStub, queue: Any, user: int, text: str) -> Any:
    botapi.user_sends_text(user, text)
    await botapi.wait_for_text(user, "⏳ queued")
    [job] = queue.list(user=str(user), status=[JobStatus.QUEUED])
    return job


async def test_status_follows_the_job(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """The status message is edited: waking with ETA → running with % → done, then the photo."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f an astronaut")
        queue.put_state(
            "autoscaler",
            "status",
            {"state": "waking", "eta_seconds": 90, "updated_at": time.time()},
        )
        queue.set_status([job.id], JobStatus.WAKING)
        await botapi.wait_for_text(ALICE, "GPU waking, ~2 min")
        leased = lease(queue, job.id)
        queue.heartbeat(job.id, leased.lease_token, progress=0.5)
        await botapi.wait_for_text(ALICE, "running · 50%")
        store_and_complete(queue, storage, leased, PNG, "0.png")
        await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
        await botapi.wait_for_text(ALICE, "✅ done")
    status_id = botapi.calls_to("sendMessage")[0].result["message_id"]
    history = botapi.edits[(ALICE, status_id)]
    order = [next(i for i, t in enumerate(history) if s in t) for s in ("waking", "50%", "done")]
    assert order == sorted(order)


async def test_429_on_send_photo_is_retried_once(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """A 429 (retry_after) on sendPhoto is honoured and the photo arrives exactly once."""
    botapi.inject("sendPhoto", status=429, retry_after=1)
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a cat")
        store_and_complete(queue, storage, lease(queue, job.id), PNG, "0.png")
        await botapi.wait_for_text(ALICE, "✅ done")
    attempts = botapi.calls_to("sendPhoto", ok_only=False)
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].files["photo"].data == PNG


async def test_big_image_goes_as_document(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """An image over Telegram's 10 MB photo limit is delivered as a document, intact."""
    big = os.urandom(11 * 1024 * 1024)
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a huge cat")
        store_and_complete(queue, storage, lease(queue, job.id), big, "0.png")
        doc = await botapi.wait_for(lambda c: c.method == "sendDocument" and c.status == 200)
        await botapi.wait_for_text(ALICE, "✅ done")
    assert doc.files["document"].data == big
    assert botapi.calls_to("sendPhoto", ok_only=False) == []


async def test_video_is_sent_as_video(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """/wan results arrive through sendVideo with the prompt in the caption."""
    clip = b"\x00\x00\x00\x18ftypmp42" + b"v" * 1000
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/wan a goose on a beach")
        store_and_complete(queue, storage, lease(queue, job.id), clip, "0.mp4")
        video = await botapi.wait_for(lambda c: c.method == "sendVideo" and c.status == 200)
    assert video.files["video"].data == clip
    assert video.params["caption"].startswith("a goose on a beach")


async def test_long_prompt_caption_is_clipped(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """A 3000-character prompt still yields a caption within 1024 chars, seed kept."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f " + "very " * 600 + "--seed 7")
        store_and_complete(queue, storage, lease(queue, job.id), PNG, "0.png")
        photo = await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
    assert len(photo.params["caption"]) <= 1024 and photo.params["caption"].endswith("seed 7")


async def test_failure_is_a_new_message(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A failed job arrives as a NEW message (Telegram notifies), saying what happened and what to try."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a cat")
        mark = botapi.mark()
        leased = lease(queue, job.id)
        queue.fail(job.id, leased.lease_token, "CUDA out of memory", retry=False)
        call = await botapi.wait_for_text(ALICE, "failed", since=mark)
    assert call.method == "sendMessage"
    assert "out of memory" in call.params["text"] and "Try" in call.params["text"]


async def test_failure_hides_operator_detail(
    botapi: BotApiStub, make_bot: Any, queue: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A server-side failure reads as plain words in chat; the path and config key go to the log."""
    error = "could not start infra.local.command '/nonexistent/comfyui': see ComfyUI's log"
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a cat")
        mark = botapi.mark()
        queue.fail(job.id, lease(queue, job.id).lease_token, error, retry=False)
        call = await botapi.wait_for_text(ALICE, "failed", since=mark)
    text = call.params["text"]
    assert call.method == "sendMessage" and "server had a problem" in text
    assert not any(w in text for w in ("infra.", "/nonexistent", "ComfyUI"))
    assert "/nonexistent/comfyui" in caplog.text


async def test_cancel_elsewhere_and_budget_wait_are_new_messages(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """A budget wait and a cancel from outside the chat (CLI, admin) are new messages, once each."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a cat")
        mark = botapi.mark()
        detail = "waiting: daily budget $5.00 reached ($5.10 spent today); it resets at 00:00 UTC"
        queue.put_state(
            "autoscaler", "status", {"state": "cold", "detail": detail, "updated_at": time.time()}
        )
        queue.set_status([job.id], JobStatus.QUEUED, detail=detail)
        wait = await botapi.wait_for_text(ALICE, "waiting", since=mark)
        queue.cancel(job.id)
        gone = await botapi.wait_for_text(ALICE, "was cancelled", since=mark)
        await botapi.wait_for_text(ALICE, "🚫 cancelled", since=mark)
    assert wait.method == "sendMessage" and "budget" in wait.params["text"]
    assert "$" not in wait.params["text"]
    assert gone.method == "sendMessage"
    news = [c for c in botapi.calls_to("sendMessage")[1:] if "waiting" in c.params["text"]]
    assert len(news) == 1


@BOTH_QUEUES
async def test_restart_mid_job_delivers_exactly_once(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """Bot stops mid-job; the job completes while it is down; the next start delivers it once."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f an astronaut")
    store_and_complete(queue, storage, lease(queue, job.id), PNG, "0.png")
    assert botapi.calls_to("sendPhoto") == []
    async with make_bot():
        await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
        await botapi.wait_for_text(ALICE, "✅ done")
    async with make_bot():  # a third start finds nothing pending
        await botapi.wait_for(
            lambda c: c.method == "setMyCommands" and len(botapi.calls_to("setMyCommands")) == 3
        )
    assert len(botapi.calls_to("sendPhoto")) == 1
    assert queue.get_state("bot", "pending") == {"jobs": []}


async def test_restart_does_not_repeat_the_status(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """After a restart the status message is not re-edited to the text it already shows, nor re-sent."""
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a cat")
    sent_before = len(botapi.calls_to("sendMessage"))
    async with make_bot():
        leased = lease(queue, job.id)
        queue.heartbeat(job.id, leased.lease_token, progress=0.5)
        await botapi.wait_for_text(ALICE, "running · 50%")
    assert botapi.calls_to("editMessageText", ok_only=False)[0].params["text"].startswith("⚙️")
    assert [c for c in botapi.calls if c.status == 400] == []
    assert len(botapi.calls_to("sendMessage")) == sent_before


async def test_photo_refused_falls_back_to_document(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """If Telegram refuses the photo (400, e.g. odd dimensions) the same bytes go as a document."""
    botapi.inject("sendPhoto", status=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
    async with make_bot():
        job = await queued_job(botapi, queue, ALICE, "/f a very wide panorama")
        store_and_complete(queue, storage, lease(queue, job.id), PNG, "0.png")
        doc = await botapi.wait_for(lambda c: c.method == "sendDocument" and c.status == 200)
        await botapi.wait_for_text(ALICE, "✅ done")
    assert doc.files["document"].data == PNG
    assert [c.status for c in botapi.calls_to("sendPhoto", ok_only=False)] == [400]
