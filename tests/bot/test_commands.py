"""The bot's commands, driven through the real PTB Application against BotApiStub."""

from __future__ import annotations

from typing import Any

from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub

ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000
PNG = b"\x89PNG\r\n\x1a\n" + b"result-bytes" * 100


def finish(queue: Any, storage: Any, job_id: str, data: bytes = PNG, key: str | None = None) -> str:
    """Play the worker: lease the job, store an output, complete it."""
    job = queue.lease("test-worker")
    assert job is not None and job.id == job_id
    key = key or f"outputs/{job_id}/0.png"
    storage.put_bytes(key, data)
    assert queue.complete(job_id, job.lease_token, outputs=[key])
    return key


async def test_start_tells_strangers_their_id(botapi: BotApiStub, make_bot: Any) -> None:
    """/start from a user not on the allowlist explains why and shows their id."""
    async with make_bot():
        botapi.user_sends_text(MALLORY, "/start")
        call = await botapi.wait_for_text(MALLORY, "allowlist")
    assert str(MALLORY) in call.params["text"]


async def test_help_lists_configured_commands(botapi: BotApiStub, make_bot: Any) -> None:
    """/help lists every command from cfg.bot.commands with an example."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/help")
        call = await botapi.wait_for_text(ALICE, "What I can do")
    text = call.params["text"]
    for cmd in ("/f ", "/dev ", "/sd ", "/qwen ", "/wan "):
        assert cmd in text
    assert "e.g. /f" in text


async def test_menu_registered_on_start(botapi: BotApiStub, make_bot: Any) -> None:
    """post_init registers the command menu from the config."""
    async with make_bot():
        call = await botapi.wait_for(lambda c: c.method == "setMyCommands")
    names = [c["command"] for c in call.params["commands"]]
    assert {"f", "qwen", "wan", "status", "cancel"} <= set(names)


async def test_generate_enqueues_and_delivers_photo(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """/f with options queues one job with those values, replies at once, then sends the photo."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f an astronaut --seed 42 --steps 4")
        await botapi.wait_for_text(ALICE, "queued #1")
        [job] = queue.list(user=str(ALICE))
        assert job.workflow == "flux_schnell" and job.front_door == "telegram"
        assert job.params == {"prompt": "an astronaut", "seed": 42, "steps": 4}
        finish(queue, storage, job.id)
        photo = await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
        await botapi.wait_for_text(ALICE, "✅ done")
    assert photo.files["photo"].data == PNG
    assert (
        photo.params["caption"].startswith("an astronaut") and "seed 42" in photo.params["caption"]
    )


async def test_status_and_cancel(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """/status lists the user's job with its position; /cancel cancels it and the status says so."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/sd a lighthouse")
        await botapi.wait_for_text(ALICE, "queued #1")
        botapi.user_sends_text(ALICE, "/status")
        status = await botapi.wait_for_text(ALICE, "Queue: 1 waiting")
        assert "sd35_large" in status.params["text"]
        botapi.user_sends_text(ALICE, "/cancel")
        await botapi.wait_for_text(ALICE, "Cancelled job")
        await botapi.wait_for_text(ALICE, "🚫 cancelled")
    [job] = queue.list(user=str(ALICE))
    assert job.status is JobStatus.CANCELLED


async def test_cancel_only_own_jobs(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """Bob cannot cancel Alice's job by naming its id."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a cat")
        await botapi.wait_for_text(ALICE, "queued #1")
        [job] = queue.list(user=str(ALICE))
        botapi.user_sends_text(BOB, f"/cancel {job.id[:8]}")
        await botapi.wait_for_text(BOB, "no job")
    assert queue.get(job.id).status is JobStatus.QUEUED


async def test_admin_commands(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """/stats shows today's jobs to admins only; /up without a launch backend says not available."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a cat")
        await botapi.wait_for_text(ALICE, "queued #1")
        botapi.user_sends_text(ALICE, "/stats")
        await botapi.wait_for_text(ALICE, "for the bot's admins")
        botapi.user_sends_text(ADMIN, "/stats")
        stats = await botapi.wait_for_text(ADMIN, "Today")
        botapi.user_sends_text(ADMIN, "/up")
        await botapi.wait_for_text(ADMIN, "/up is not available")
    assert "1 jobs" in stats.params["text"]


async def test_unknown_command(botapi: BotApiStub, make_bot: Any) -> None:
    """An unknown command gets a pointer to /help."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/frobnicate now")
        await botapi.wait_for_text(ALICE, "send /help")


class RecordingAdmin:
    """AdminOps double: records which operation the bot asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def up(self) -> str:
        self.calls.append("up")
        return "Up: nomad-test (up)."

    def down(self) -> str:
        from nomad.errors import BackendError

        self.calls.append("down")
        raise BackendError("teardown refused by the provider", hint="retry with `nomad down`")


async def test_admin_up_down_wired(botapi: BotApiStub, make_bot: Any) -> None:
    """/up and /down reach the launch ops for admins only; a failure is reported politely."""
    admin = RecordingAdmin()
    async with make_bot(admin=admin):
        botapi.user_sends_text(ALICE, "/up")
        await botapi.wait_for_text(ALICE, "for the bot's admins")
        botapi.user_sends_text(ADMIN, "/up")
        await botapi.wait_for_text(ADMIN, "Up: nomad-test")
        botapi.user_sends_text(ADMIN, "/down")
        failed = await botapi.wait_for_text(ADMIN, "/down failed")
    assert admin.calls == ["up", "down"]
    assert "retry with `nomad down`" in failed.params["text"]


async def test_image_document_is_accepted(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """An uncompressed PNG sent as a file with a /qwen caption is edited like a photo."""
    png = b"\x89PNG\r\n\x1a\n" + b"lossless" * 64
    async with make_bot():
        botapi.user_sends_document(
            ALICE, png, file_name="me.png", mime_type="image/png", caption="/qwen add a scarf"
        )
        await botapi.wait_for_text(ALICE, "⏳ queued")
    [job] = queue.list(user=str(ALICE))
    assert job.workflow == "qwen_image_edit" and storage.get_bytes(job.inputs["image"]) == png


async def test_prefs_apply_where_the_workflow_has_them(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """/prefs defaults are stored per user, used when the workflow has them, and typed options win."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/prefs --ar 16:9 --guidance 2.5")
        await botapi.wait_for_text(ALICE, "Your default options: --ar 16:9 --guidance 2.5")
        botapi.user_sends_text(ALICE, "/f a cat --ar 1:1")
        await botapi.wait_for_text(ALICE, "⏳ queued #1")
        mark = botapi.mark()
        botapi.user_sends_text(ALICE, "/dev a dog")
        await botapi.wait_for_text(ALICE, "⏳ queued", since=mark)
    by_workflow = {j.workflow: j.params for j in queue.list(user=str(ALICE))}
    assert (
        by_workflow["flux_schnell"]["ar"] == "1:1"
        and by_workflow["flux_schnell"]["guidance"] == 2.5
    )
    assert by_workflow["flux_dev"]["ar"] == "16:9" and "guidance" not in by_workflow["flux_dev"]
    assert queue.get_state("bot.user", str(ALICE))["prefs"] == {"ar": "16:9", "guidance": 2.5}
