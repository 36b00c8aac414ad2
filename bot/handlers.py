"""Telegram handlers: validate, enqueue, reply at once, hand the job to the tracker.

Handlers never wait for a GPU. Blocking work (queue, S3, workflow binding)
runs in threads; with ``concurrent_updates(True)`` one user's request never
delays another's. Every refusal says what was wrong and what to do, and
queues nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from telegram import ForceReply, Message, ReplyParameters, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from nomad.errors import LimitExceeded, NomadError, UsageError, WorkflowError
from nomad.queue.base import JobStatus
from nomad_bot import texts
from nomad_bot.deps import BotDeps, WorkflowLike
from nomad_bot.options import parse_message, parse_options
from nomad_bot.sessions import Delivery, Sessions
from nomad_bot.tracker import AUTOSCALER_STATE, Tracker

log = logging.getLogger("nomad.bot")

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # bots may download files up to 20 MB
SEED_MAX = 2**32 - 1
Context = ContextTypes.DEFAULT_TYPE
_WAITING = [JobStatus.QUEUED, JobStatus.WAKING, JobStatus.RUNNING]
FIXED_COMMANDS = frozenset({"start", "help", "status", "cancel", "prefs", "up", "down", "stats"})


@dataclass
class ImageInput:
    """An input image: bytes for validation, and its storage key once stored."""

    data: bytes
    key: str | None = None


class Handlers:
    """The bot's handlers, sharing one set of deps, sessions and the tracker."""

    def __init__(self, deps: BotDeps, sessions: Sessions, tracker: Tracker) -> None:
        self.deps = deps
        self.sessions = sessions
        self.tracker = tracker
        # per chat: an "edit this" question is remembered before its answer is read
        # (updates run concurrently, and a quick reply could beat the bookkeeping)
        self._asking: dict[int, asyncio.Lock] = {}

    # ---- plain commands --------------------------------------------------
    async def start(self, update: Update, context: Context) -> None:
        uid = _uid(update)
        await _reply(update, texts.welcome(uid, self.deps.is_allowed(uid), _lang(update)))

    async def help(self, update: Update, context: Context) -> None:
        """Built from the commands whose workflow loads here (broken or missing ones are left out)."""
        kinds = await self.enabled()
        commands = {c: self.deps.config.commands[c] for c in kinds}
        await _reply(update, texts.help_text(commands, kinds, _lang(update)))

    async def enabled(self) -> dict[str, str]:
        """command -> image | edit | video, for the commands this deployment can run."""
        kinds: dict[str, str] = {}
        for command, workflow in sorted(self.deps.config.commands.items()):
            if command in FIXED_COMMANDS:
                continue
            try:
                wf = await asyncio.to_thread(self.deps.load_workflow, workflow)
            except NomadError as exc:
                log.warning("/%s is hidden: workflow %s does not load (%s)", command, workflow, exc)
                continue
            kinds[command] = "edit" if _needs_image(wf) else _kind(wf)
        return kinds

    async def unknown(self, update: Update, context: Context) -> None:
        """A command none of our handlers took: ours and misspelt ⇒ hint; another bot's ⇒ silence."""
        msg = update.effective_message
        text = (msg.text or msg.caption or "") if msg else ""
        head = text.split()[0] if text.split() else ""
        if not self._for_me(msg, head):
            return
        await _reply(update, texts.t(_lang(update), "unknown_command", command=head or "that"))

    def _for_me(self, msg: Message | None, head: str) -> bool:
        """``/x@us`` always; ``/x@other_bot`` never; bare ``/x`` in private chats only.

        In a group several bots read the same commands, so an unknown bare
        command there is probably someone else's and gets no answer.
        """
        if msg is None:
            return False
        _, at, target = head.partition("@")
        if at:
            return target.lower() == (msg.get_bot().username or "").lower()
        return msg.chat.type == "private"

    async def text(self, update: Update, context: Context) -> None:
        """Plain text: an answer to "✏️ edit this", a message addressed to us, or a hint."""
        msg = update.effective_message
        if msg is None or not msg.text:
            return
        me = (msg.get_bot().username or "").lower()
        body = msg.text.strip()
        addressed = body.lower().startswith(f"@{me}") if me else False
        if addressed:
            body = body[len(me) + 1 :].strip()
            if body.startswith("/"):  # "@nomad_bot /f a cat": a command addressed by name
                await self.generate(update, context, text=body)
                return
        reply_to = msg.reply_to_message
        if reply_to is not None and reply_to.from_user and reply_to.from_user.is_bot:
            async with self._asking.setdefault(reply_to.chat_id, asyncio.Lock()):
                key = await self.sessions.result_key(reply_to.chat_id, reply_to.message_id)
            edit = next(iter(await self._edit_commands()), None)
            if key and edit and body:  # the instruction for an "edit this" (or a reply to a result)
                await self.generate(update, context, text=f"/{edit} {body}")
                return
        if msg.chat.type != "private" and not addressed:
            return  # group chatter is not for us
        await _reply(update, await self._hint(_lang(update)))

    async def _hint(self, lang: str) -> str:
        kinds = await self.enabled()
        images = sorted((c for c, k in kinds.items() if k == "image"), key=lambda c: (len(c), c))
        cmd = next(iter(images), next(iter(kinds), "help"))  # the shortest to type
        example = texts.example(kinds.get(cmd, "image"), lang)
        return str(texts.t(lang, "plain_text", cmd=cmd, example=example))

    # ---- generation ------------------------------------------------------
    async def generate(self, update: Update, context: Context, text: str | None = None) -> None:
        """Any configured command (text, or the caption of a photo/document)."""
        msg = update.effective_message
        if msg is None:
            return
        uid, lang = _uid(update), _lang(update)
        if not self.deps.is_allowed(uid):
            await _reply(update, texts.not_allowed(uid, lang))
            return
        try:
            await self._submit(update, msg, uid, text)
        except LimitExceeded as exc:
            await _reply(update, texts.limit_text(exc, self.deps.clock(), lang))
        except NomadError as exc:
            await _reply(update, texts.error_text(exc, lang))

    async def media(self, update: Update, context: Context) -> None:
        """A photo or file sent to the bot: only meaningful with a command caption."""
        msg = update.effective_message
        if msg is None:
            return
        caption = (msg.caption or "").strip()
        if caption.startswith("/"):
            head = caption.split()[0]
            if "@" in head and not self._for_me(msg, head):
                return
            await self.generate(update, context)
            return
        if msg.chat.type != "private":
            return  # a photo shared in a group is not a request
        lang = _lang(update)
        mime = msg.document.mime_type if msg.document else "image/jpeg"
        if not (mime or "").startswith("image/"):
            await _reply(update, texts.t(lang, "media_not_image"))
            return
        example = next(iter(await self._edit_commands()), "qwen")
        await _reply(update, texts.t(lang, "media_hint", cmd=example))

    async def _submit(self, update: Update, msg: Message, uid: int, text: str | None) -> None:
        parsed = parse_message(text or msg.text or msg.caption or "")
        name = self.deps.workflow_for(parsed.command)
        if name is None:
            raise UsageError(f"unknown command /{parsed.command}", hint="send /help for the list")
        wf = await asyncio.to_thread(self.deps.load_workflow, name)
        if not parsed.prompt.strip():
            raise UsageError(
                f"the prompt is empty — write what you want after /{parsed.command}",
                hint=f"e.g. /{parsed.command} an astronaut riding a horse",
            )
        prefs = (await self.sessions.user(uid)).prefs
        values: dict[str, Any] = {k: v for k, v in prefs.items() if k in wf.params}
        values.update(parsed.values)  # what the user typed now wins over their defaults
        values[_prompt_param(wf)] = parsed.prompt
        seed = _pick_seed(wf, values)
        image = await self._input_image(msg, uid, name) if _needs_image(wf) else None
        images = {"image": image.data} if image else None
        try:  # validate now so nothing is queued on bad input; the worker binds again
            await asyncio.to_thread(wf.bind, values, images)
        except WorkflowError as exc:
            raise WorkflowError(exc.message, hint=_options_hint(parsed.command, wf)) from None
        inputs = {"image": await self._store_input(image, uid)} if image else None
        try:
            job = await asyncio.to_thread(
                self.deps.queue.enqueue,
                name,
                values,
                inputs=inputs,
                front_door="telegram",
                user=str(uid),
                chat=str(msg.chat_id),
                client_key=f"telegram:{msg.chat_id}:{msg.message_id}",
            )
        except NomadError:
            if image is not None and image.key is None and inputs:  # refused: drop our upload
                await self._discard(inputs["image"])
            raise
        if await self.sessions.delivery(job.id) is not None:  # same message seen twice
            self.tracker.track(job.id)
            return
        d = Delivery(
            job.id,
            msg.chat_id,
            uid,
            name,
            parsed.prompt,
            seed,
            kind=_kind(wf),
            lang=_lang(update),
            message_id=msg.message_id,
        )
        await self.sessions.save_delivery(d)
        await self.sessions.add_pending(job.id)
        await self._first_status(msg, d, job.id)
        self.tracker.track(job.id)

    async def _first_status(self, msg: Message, d: Delivery, job_id: str) -> None:
        pos = await asyncio.to_thread(self.deps.queue.position, job_id)
        cluster = await asyncio.to_thread(self.deps.queue.get_state, *AUTOSCALER_STATE)
        job = await asyncio.to_thread(self.deps.queue.get, job_id)
        text = texts.status_text(job, pos, cluster, self.deps.clock(), d.lang)
        try:
            sent = await msg.reply_text(
                text,
                reply_parameters=ReplyParameters(msg.message_id, allow_sending_without_reply=True),
            )
        except TelegramError as exc:  # the tracker sends a fresh status message later
            log.warning("first status of job %s failed: %s", job_id, exc)
            return
        d.status_message_id = sent.message_id
        d.shown, d.shown_at = text, self.deps.clock()  # the tracker never repeats it
        await self.sessions.save_delivery(d)

    async def _input_image(self, msg: Message, uid: int, workflow: str) -> ImageInput:
        """The image to edit: this message's photo, the replied-to one, or the last result."""
        for source in (msg, msg.reply_to_message):
            if source is None:
                continue
            if source is msg.reply_to_message and source.from_user and source.from_user.is_bot:
                key = await self.sessions.result_key(source.chat_id, source.message_id)
                if key:
                    return ImageInput(
                        await asyncio.to_thread(self.deps.storage.get_bytes, key), key
                    )
            data = await self._download(source)
            if data is not None:
                return ImageInput(data)
        last = (await self.sessions.user(uid)).last_output
        if last:
            return ImageInput(await asyncio.to_thread(self.deps.storage.get_bytes, last), last)
        raise UsageError(
            f"{workflow} edits an image, and I have none from you yet",
            hint="reply to a photo with the command, send a photo with the command "
            "as its caption, or make one first with /f",
        )

    async def _download(self, source: Message) -> bytes | None:
        """Bytes of a photo or image document in ``source``; None when it has neither."""
        if source.photo:
            file_id, size = source.photo[-1].file_id, source.photo[-1].file_size
        elif source.document:
            mime = source.document.mime_type or "unknown type"
            if not mime.startswith("image/"):
                raise UsageError(
                    f"that file is {source.document.file_name or 'a document'} "
                    f"({mime}), not an image",
                    hint="send a photo (or an image file such as PNG or JPEG)",
                )
            file_id, size = source.document.file_id, source.document.file_size
        else:
            return None
        if size is not None and size > DOWNLOAD_LIMIT:
            raise _too_big(size)
        try:
            tg_file = await source.get_bot().get_file(file_id)
            return bytes(await tg_file.download_as_bytearray())
        except BadRequest as exc:
            if "too big" in exc.message.lower():
                raise _too_big(size) from None
            raise UsageError(
                f"Telegram would not give me that image ({exc.message})", hint="send it again"
            ) from None

    async def _store_input(self, image: ImageInput, uid: int) -> str:
        if image.key:
            return image.key
        key = f"{self.deps.input_prefix}{uid}/{uuid.uuid4().hex}.jpg"
        await asyncio.to_thread(self.deps.storage.put_bytes, key, image.data, "image/jpeg")
        return key

    async def _discard(self, key: str) -> None:
        """Best effort: remove an input we stored for a job that was then refused."""
        delete = getattr(self.deps.storage, "delete", None)
        if delete is not None:
            with contextlib.suppress(NomadError):
                await asyncio.to_thread(delete, key)

    async def _edit_commands(self) -> list[str]:
        return [c for c, k in (await self.enabled()).items() if k == "edit"]

    # ---- status and cancel -------------------------------------------------
    async def prefs(self, update: Update, context: Context) -> None:
        """/prefs [--opt value …] | /prefs clear: default options for this user's jobs."""
        uid, lang = _uid(update), _lang(update)
        if not self.deps.is_allowed(uid):
            await _reply(update, texts.not_allowed(uid, lang))
            return
        session = await self.sessions.user(uid)
        rest = " ".join(context.args or [])
        try:
            extra, values = parse_options(rest)
        except UsageError as exc:
            await _reply(update, exc.message + (f"\n→ {exc.hint}" if exc.hint else ""))
            return
        if extra.strip().lower() == "clear":
            session.prefs = {}
        elif extra.strip():
            await _reply(update, texts.t(lang, "prefs_usage"))
            return
        known = await self._option_names()
        bogus = sorted(k for k in values if k not in known)
        if bogus:  # stored, it would silently do nothing forever
            await _reply(
                update,
                texts.t(
                    lang,
                    "prefs_unknown",
                    names=", ".join(f"--{b}" for b in bogus),
                    known=" ".join(f"--{k}" for k in sorted(known)) or "-",
                ),
            )
            return
        session.prefs.update(values)
        if values or extra.strip():
            await self.sessions.save_user(uid, session)
        shown = " ".join(f"--{k} {v}" for k, v in sorted(session.prefs.items()))
        await _reply(
            update, texts.t(lang, "prefs_shown", shown=shown or texts.t(lang, "prefs_none"))
        )

    async def _option_names(self) -> set[str]:
        """Every option some enabled command takes (not the prompt or the image)."""
        names: set[str] = set()
        for command in await self.enabled():
            wf = await asyncio.to_thread(
                self.deps.load_workflow, self.deps.config.commands[command]
            )
            names.update(
                n
                for n in wf.params
                if n not in (_prompt_param(wf), "image") and not _is_image(wf.params[n])
            )
        return names

    async def status(self, update: Update, context: Context) -> None:
        """The GPU, the queue and the caller's jobs — for allowlisted users only."""
        uid, lang = _uid(update), _lang(update)
        if not self.deps.is_allowed(uid):
            await _reply(update, texts.not_allowed(uid, lang))
            return
        queue = self.deps.queue
        cluster = await asyncio.to_thread(queue.get_state, *AUTOSCALER_STATE)
        counts = await asyncio.to_thread(queue.counts)
        mine = await asyncio.to_thread(queue.list, status=_WAITING, user=str(uid), limit=10)
        now = self.deps.clock()
        lines = [texts.cluster_line(cluster, now, lang) or texts.t(lang, "gpu_none")]
        waiting = counts.get(JobStatus.QUEUED, 0) + counts.get(JobStatus.WAKING, 0)
        lines.append(
            texts.t(lang, "status_queue", waiting=waiting, running=counts.get(JobStatus.RUNNING, 0))
        )
        if not mine:
            lines.append(texts.t(lang, "status_none"))
        for job in mine:
            pos = await asyncio.to_thread(queue.position, job.id)
            lines.append(
                "• " + texts.status_text(job, pos, cluster, now, lang).replace("\n", " — ")
            )
        await _reply(update, texts.clip("\n".join(lines)))

    async def cancel(self, update: Update, context: Context) -> None:
        uid, lang = _uid(update), _lang(update)
        wanted = context.args[0] if context.args else None
        mine = await asyncio.to_thread(
            self.deps.queue.list,
            status=_WAITING,
            user=None if self.deps.is_admin(uid) and wanted else str(uid),
            limit=50,
        )
        match = [j for j in mine if wanted is None or j.id.startswith(wanted)]
        if not match:
            what = (
                texts.t(lang, "cancel_none_job", job=wanted)
                if wanted
                else texts.t(lang, "cancel_none_any")
            )
            await _reply(update, texts.t(lang, "cancel_none", what=what))
            return
        job = await asyncio.to_thread(self.deps.queue.cancel, match[0].id)
        d = await self.sessions.delivery(job.id)
        if d is not None and "cancelled" not in d.notices:  # this reply is the news
            d.notices.append("cancelled")
            await self.sessions.save_delivery(d)
        await _reply(
            update, texts.t(lang, "cancel_done", job=texts.short(job.id), workflow=job.workflow)
        )

    # ---- buttons under results ----------------------------------------------
    async def button(self, update: Update, context: Context) -> None:
        """♻️ again, 🎲 variation, ✏️ edit this, 📄 original file. Every query is answered."""
        query = update.callback_query
        if query is None:
            return
        uid, lang = _uid(update), _lang(update)
        _, _, rest = (query.data or "").partition(":")
        action, _, job_id = rest.partition(":")
        msg = query.message if isinstance(query.message, Message) else None
        if msg is None or not job_id:
            await query.answer(texts.t(lang, "button_gone"))
            return
        if action != "orig" and not self.deps.is_allowed(uid):
            await query.answer(texts.not_allowed(uid, lang)[:200], show_alert=True)
            return
        try:
            if action == "orig":
                await self._send_original(query, msg, lang)
            elif action == "edit":
                await self._ask_edit(query, msg, lang)
            elif action in ("again", "var"):
                await self._repeat(query, msg, uid, lang, job_id, new_seed=action == "var")
            else:
                await query.answer()
        except LimitExceeded as exc:
            await query.answer(
                texts.limit_text(exc, self.deps.clock(), lang)[:200], show_alert=True
            )
        except NomadError as exc:
            await query.answer(texts.error_text(exc, lang)[:200], show_alert=True)

    async def _send_original(self, query: Any, msg: Message, lang: str) -> None:
        """The stored output itself (lossless PNG), not Telegram's recompressed photo."""
        key = await self.sessions.result_key(msg.chat_id, msg.message_id)
        if key is None:
            await query.answer(texts.t(lang, "button_gone"))
            return
        data = await asyncio.to_thread(self.deps.storage.get_bytes, key)
        await query.answer()
        await msg.reply_document(
            data,
            filename=key.rsplit("/", 1)[-1] or "result.png",
            reply_parameters=ReplyParameters(msg.message_id, allow_sending_without_reply=True),
        )

    async def _ask_edit(self, query: Any, msg: Message, lang: str) -> None:
        """Ask for the instruction; the answer (a reply) becomes an edit of exactly this output."""
        key = await self.sessions.result_key(msg.chat_id, msg.message_id)
        if key is None:
            await query.answer(texts.t(lang, "button_gone"))
            return
        await query.answer()
        job = (await self.sessions.result_job(msg.chat_id, msg.message_id)) or ""
        async with self._asking.setdefault(msg.chat_id, asyncio.Lock()):
            ask = await msg.reply_text(
                texts.t(lang, "edit_ask"),
                reply_markup=ForceReply(selective=True),
                reply_parameters=ReplyParameters(msg.message_id, allow_sending_without_reply=True),
            )
            await self.sessions.remember_result(ask.chat_id, ask.message_id, key, job)

    async def _repeat(
        self, query: Any, msg: Message, uid: int, lang: str, job_id: str, *, new_seed: bool
    ) -> None:
        """Queue the job again: same inputs and options; a variation gets a different seed."""
        try:
            old = await asyncio.to_thread(self.deps.queue.get, job_id)
        except NomadError:
            await query.answer(texts.t(lang, "button_gone"))
            return
        wf = await asyncio.to_thread(self.deps.load_workflow, old.workflow)
        values = dict(old.params)
        seed = values.get("seed") if isinstance(values.get("seed"), int) else None
        if new_seed and "seed" in wf.params:
            values.pop("seed", None)
            while True:
                seed = _pick_seed(wf, values)
                if seed != old.params.get("seed"):
                    break
                values.pop("seed", None)
        job = await asyncio.to_thread(
            self.deps.queue.enqueue,
            old.workflow,
            values,
            inputs=dict(old.inputs) or None,
            front_door="telegram",
            user=str(uid),
            chat=str(msg.chat_id),
            client_key=f"telegram:cb:{query.id}",
        )
        await query.answer(texts.t(lang, "button_queued"))
        if await self.sessions.delivery(job.id) is not None:  # the same press delivered twice
            self.tracker.track(job.id)
            return
        prompt = str(values.get(_prompt_param(wf), ""))
        d = Delivery(
            job.id,
            msg.chat_id,
            uid,
            old.workflow,
            prompt,
            seed,
            kind=_kind(wf),
            lang=lang,
            message_id=msg.message_id,
        )
        await self.sessions.save_delivery(d)
        await self.sessions.add_pending(job.id)
        await self._first_status(msg, d, job.id)
        self.tracker.track(job.id)

    # ---- admin -----------------------------------------------------------
    async def admin_up(self, update: Update, context: Context) -> None:
        await self._admin_op(update, "up")

    async def admin_down(self, update: Update, context: Context) -> None:
        await self._admin_op(update, "down")

    async def _admin_op(self, update: Update, op: str) -> None:
        if not self.deps.is_admin(_uid(update)):
            await _reply(update, "That command is for the bot's admins.")
            return
        if self.deps.admin is None:
            await _reply(
                update,
                f"/{op} is not available: this bot has no launch backend wired in "
                f"(run `nomad {op}` on the server).",
            )
            return
        try:
            result = await asyncio.to_thread(getattr(self.deps.admin, op))
        except NomadError as exc:
            result = f"/{op} failed: {exc.message}" + (f"\n→ {exc.hint}" if exc.hint else "")
        await _reply(update, texts.clip(result))

    async def stats(self, update: Update, context: Context) -> None:
        if not self.deps.is_admin(_uid(update)):
            await _reply(update, "That command is for the bot's admins.")
            return
        now = self.deps.clock()
        midnight = now - (now % 86400)
        s = await asyncio.to_thread(self.deps.queue.stats_since, midnight)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        lines = [
            f"Today ({day} UTC): {int(s.get('jobs', 0))} jobs · "
            f"{int(s.get('succeeded', 0))} done · "
            f"{int(s.get('failed', 0))} failed · {int(s.get('cancelled', 0))} cancelled · "
            f"spend ${s.get('cost', 0.0):.2f}"
        ]
        cluster = await asyncio.to_thread(self.deps.queue.get_state, *AUTOSCALER_STATE)
        if cluster and cluster.get("detail"):  # operator wording, for admins only
            lines.append(f"Autoscaler: {cluster['detail']}")
        failed = await asyncio.to_thread(self.deps.queue.list, status=[JobStatus.FAILED], limit=5)
        if failed:
            lines.append("Last failures:")
            lines += [
                f"• {texts.short(j.id)} {j.workflow}: {(j.error or '?').strip().splitlines()[0][:300]}"
                for j in failed
            ]
        await _reply(update, texts.clip("\n".join(lines)))

    async def on_error(self, update: object, context: Context) -> None:
        """Last resort: log (never the token) and tell the user in plain words."""
        log.error("bot handler failed: %s", context.error, exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            with contextlib.suppress(TelegramError):
                await update.effective_message.reply_text(texts.t(_lang(update), "went_wrong"))


def _uid(update: Update) -> int:
    return update.effective_user.id if update.effective_user else 0


def _lang(update: Update) -> str:
    """The catalogue language for this user (Telegram's language_code; English otherwise)."""
    code = update.effective_user.language_code if update.effective_user else None
    return str(texts.lang_of(code))


async def _reply(update: Update, text: str) -> None:
    msg = update.effective_message
    if msg is not None:
        await msg.reply_text(
            texts.clip(text),
            reply_parameters=ReplyParameters(msg.message_id, allow_sending_without_reply=True),
        )


def _too_big(size: int | None) -> UsageError:
    mb = f" ({size / 2**20:.0f} MB)" if size else ""
    return UsageError(
        f"that image is too big{mb}: bots can only download files up to 20 MB",
        hint="send a smaller image, or send it as a photo so Telegram compresses it",
    )


def _kind(wf: WorkflowLike) -> str:
    if getattr(wf, "output_kind", "image") == "video":
        return "video"
    return "image"


def _needs_image(wf: WorkflowLike) -> bool:
    """Edit workflows take an input image: a param of type image (or declared image inputs)."""
    spec = wf.params.get("image")
    if spec is not None:
        kind = spec.get("type") if isinstance(spec, dict) else getattr(spec, "type", "image")
        return str(getattr(kind, "value", kind)) == "image"
    declared: list[str] = list(getattr(wf, "image_inputs", None) or [])
    return "image" in declared


def _is_image(spec: Any) -> bool:
    kind = spec.get("type") if isinstance(spec, dict) else getattr(spec, "type", "")
    return str(getattr(kind, "value", kind)) == "image"


def _options_hint(command: str, wf: WorkflowLike) -> str:
    """What a chat user can type (the library's hint names CLI commands, useless here)."""
    names = [
        f"--{n}"
        for n, spec in wf.params.items()
        if n not in ("prompt", "image") and getattr(spec, "type", "") != "image"
    ]
    return (
        f"options for /{command}: {', '.join(names)}" if names else f"/{command} takes no options"
    )


def _prompt_param(wf: WorkflowLike) -> str:
    for name in ("prompt", "instruction", "text"):
        if name in wf.params:
            return name
    return "prompt"


def _pick_seed(wf: WorkflowLike, values: dict[str, Any]) -> int | None:
    """Give every job a seed (shown in the caption) so any result can be reproduced."""
    if "seed" in values:
        seed = values["seed"]
        return seed if isinstance(seed, int) else None
    if "seed" not in wf.params:
        return None
    spec = wf.params["seed"]
    hi = getattr(spec, "max", None)
    lo = getattr(spec, "min", None)
    top = min(int(hi), SEED_MAX) if isinstance(hi, int | float) else SEED_MAX  # short to retype
    values["seed"] = random.randint(int(lo) if isinstance(lo, int | float) else 0, top)
    return int(values["seed"])
