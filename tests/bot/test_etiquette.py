"""Group etiquette, phone-typed options, plain text, languages, and the buttons under results."""

from __future__ import annotations

from typing import Any

from nomad.config.schema import BotConfig
from nomad.queue.base import JobStatus
from nomad.testing.botapi import BotApiStub

ALICE, BOB, MALLORY, ADMIN = 1001, 1002, 6666, 9000
GROUP = -100555
PNG = b"\x89PNG\r\n\x1a\n" + b"lossless-original" * 100


async def deliver(
    botapi: BotApiStub, queue: Any, storage: Any, user: int = ALICE
) -> tuple[Any, Any]:
    """Play the worker for the user's queued job; returns (job, the sendPhoto call)."""
    [job] = queue.list(user=str(user), status=[JobStatus.QUEUED])
    leased = queue.lease("w")
    key = f"outputs/{job.id}/0.png"
    storage.put_bytes(key, PNG)
    queue.complete(job.id, leased.lease_token, outputs=[key])
    photo = await botapi.wait_for(lambda c: c.method == "sendPhoto" and c.status == 200)
    return queue.get(job.id), photo


async def test_commands_for_other_bots_get_no_answer(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """In a group `/f@other_bot` and bare unknown commands are ignored; `/f@<us>` is taken."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f@other_bot a cat", chat_id=GROUP)
        botapi.user_sends_text(ALICE, "/weather", chat_id=GROUP)
        botapi.user_sends_text(ALICE, "/f@nomad_stub_bot a dog", chat_id=GROUP)
        await botapi.wait_for_text(GROUP, "⏳ queued")
        botapi.user_sends_text(ALICE, "just chatting with friends", chat_id=GROUP)
        botapi.user_sends_text(ALICE, "/help@nomad_stub_bot", chat_id=GROUP)
        await botapi.wait_for_text(GROUP, "What I can do")
    texts = botapi.texts_to(GROUP)
    assert len(texts) == 2  # the dog's status and the help: nothing for the others
    [job] = queue.list(user=str(ALICE))
    assert job.params["prompt"] == "a dog"


async def test_addressed_by_name_and_plain_text_hint(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """`@bot /f …` in a group queues; plain text in private gets a helpful reply naming a command."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "@nomad_stub_bot /f a red fox", chat_id=GROUP)
        await botapi.wait_for_text(GROUP, "⏳ queued")
        botapi.user_sends_text(ALICE, "an astronaut please")
        hint = await botapi.wait_for_text(ALICE, "start with a command")
    assert "/f " in hint.params["text"] and "/help" in hint.params["text"]
    [job] = queue.list(user=str(ALICE))
    assert job.params["prompt"] == "a red fox"


async def test_em_dash_options_are_honoured(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """Phone autocorrect's em dash (`—steps 2`) and en dash (U+2013) are options, not prompt words."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a lighthouse —steps 2 –seed 7")
        await botapi.wait_for_text(ALICE, "⏳ queued")
    [job] = queue.list(user=str(ALICE))
    assert job.params == {"prompt": "a lighthouse", "steps": 2, "seed": 7}


async def test_prefs_refuses_unknown_options(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """`/prefs --bogus 1` is refused (it would silently do nothing) and nothing is stored."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/prefs --bogus 1")
        call = await botapi.wait_for_text(ALICE, "--bogus")
    assert "No command of mine has --bogus" in call.params["text"]
    assert not (queue.get_state("bot.user", str(ALICE)) or {}).get("prefs")


async def test_strangers_cannot_read_status(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """/status from someone not on the allowlist shows nothing about the queue or the GPU."""
    async with make_bot():
        botapi.user_sends_text(MALLORY, "/status")
        call = await botapi.wait_for_text(MALLORY, "allowlist")
    assert "Queue:" not in call.params["text"] and "GPU asleep" not in call.params["text"]
    assert all(c.params.get("text", "").startswith("Sorry") for c in botapi.calls_to("sendMessage"))


async def test_help_and_menu_show_only_enabled_workflows(
    botapi: BotApiStub, make_bot: Any, workflows: Any
) -> None:
    """A command whose workflow does not load is in neither /help nor the menu; the edit command says it needs a photo."""
    cfg = BotConfig(
        allowlist=[ALICE], commands={"f": "flux_schnell", "qwen": "qwen_image_edit", "x": "nope"}
    )
    async with make_bot(config=cfg):
        botapi.user_sends_text(ALICE, "/help")
        call = await botapi.wait_for_text(ALICE, "What I can do")
    assert "/x" not in call.params["text"] and "/f" in call.params["text"]
    menu = {c["command"]: c["description"] for c in botapi.commands}
    assert "x" not in menu and {"f", "qwen"} <= set(menu)
    assert "photo" in menu["qwen"] and "photo" not in menu["f"]


async def test_language_follows_telegram(botapi: BotApiStub, make_bot: Any, queue: Any) -> None:
    """A user whose Telegram speaks German gets German; anyone else English."""
    botapi.user_language(ALICE, "de-AT")
    botapi.user_language(BOB, "pt-BR")
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f eine Katze")
        await botapi.wait_for_text(ALICE, "⏳ eingereiht")
        botapi.user_sends_text(BOB, "/f a cat")
        await botapi.wait_for_text(BOB, "⏳ queued")


async def test_variation_button_queues_a_new_seed(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """🎲 under a result queues the same prompt and options with a different seed; the query is answered."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a lighthouse --seed 42 --steps 3")
        await botapi.wait_for_text(ALICE, "⏳ queued")
        job, photo = await deliver(botapi, queue, storage)
        where = (ALICE, photo.result["message_id"])
        data = next(d for d in botapi.buttons(where) if d.startswith("nb:var:"))
        query = botapi.user_presses_button(ALICE, where, data)
        await botapi.wait_for(lambda c: c.method == "answerCallbackQuery")
        [again] = queue.list(user=str(ALICE), status=[JobStatus.QUEUED])
    assert again.id != job.id and again.workflow == job.workflow
    assert again.params["prompt"] == "a lighthouse" and again.params["steps"] == 3
    assert isinstance(again.params["seed"], int) and again.params["seed"] != 42
    assert query in botapi.callback_answers


async def test_original_file_button_sends_the_stored_bytes(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """📄 sends the stored output as a document, byte for byte (not Telegram's recompressed photo)."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a lighthouse")
        await botapi.wait_for_text(ALICE, "⏳ queued")
        job, photo = await deliver(botapi, queue, storage)
        where = (ALICE, photo.result["message_id"])
        data = next(d for d in botapi.buttons(where) if d.startswith("nb:orig:"))
        query = botapi.user_presses_button(ALICE, where, data)
        doc = await botapi.wait_for(lambda c: c.method == "sendDocument" and c.status == 200)
    assert doc.files["document"].data == storage.get_bytes(job.outputs[0]) == PNG
    assert query in botapi.callback_answers


async def test_edit_this_asks_then_edits_that_output(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any
) -> None:
    """✏️ asks for the instruction; the reply queues an edit whose input is exactly that output."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a lighthouse")
        await botapi.wait_for_text(ALICE, "⏳ queued")
        job, photo = await deliver(botapi, queue, storage)
        await botapi.wait_for_text(ALICE, "✅ done")
        where = (ALICE, photo.result["message_id"])
        data = next(d for d in botapi.buttons(where) if d.startswith("nb:edit:"))
        botapi.user_presses_button(ALICE, where, data)
        ask = await botapi.wait_for_text(ALICE, "What should I change?")
        mark = botapi.mark()
        botapi.user_sends_text(ALICE, "paint it red", reply_to=ask.result["message_id"])
        await botapi.wait_for_text(ALICE, "⏳ queued", since=mark)  # sent after the enqueue
    [edit] = queue.list(user=str(ALICE), status=[JobStatus.QUEUED])
    assert edit.workflow == "qwen_image_edit" and edit.params["prompt"] == "paint it red"
    assert edit.inputs == {"image": job.outputs[0]}
    assert ask.params["reply_markup"]["force_reply"] is True


async def test_out_of_range_seed_shows_integer_bounds(
    botapi: BotApiStub, make_bot: Any, queue: Any
) -> None:
    """`/f --seed -1` is refused with the exact integer range (no float rounding to 2^64), nothing queued."""
    async with make_bot():
        botapi.user_sends_text(ALICE, "/f a cat --seed -1")
        call = await botapi.wait_for_text(ALICE, "Not queued")
    assert "0..18446744073709551615" in call.params["text"] and "e+" not in call.params["text"]
    assert queue.list() == []
