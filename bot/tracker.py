"""One task per job: keep its status message honest, then deliver the result.

The task polls the queue at a bounded interval (``BotDeps.poll_interval``),
edits the status message only when its text changes, and on completion sends
the result (photo ≤ 10 MB else document; video ≤ 50 MB else document). The
delivery document in the queue database records each output sent, so a
restarted bot resumes every undelivered job and never sends one twice.

Tasks are plain asyncio tasks owned here (not ``Application.create_task``,
whose tasks ``Application.stop`` would wait for forever); :meth:`stop`
cancels them and the pending list in the database carries them over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import BadRequest, RetryAfter, TelegramError

from nomad.errors import JobNotFound, NomadError
from nomad.queue.base import Job, JobStatus
from nomad_bot import texts
from nomad_bot.deps import BotDeps
from nomad_bot.pacing import Pacer
from nomad_bot.sessions import Delivery, Sessions, UserSession

log = logging.getLogger("nomad.bot")

PHOTO_LIMIT = 10 * 1024 * 1024
UPLOAD_LIMIT = 50 * 1024 * 1024
AUTOSCALER_STATE = ("autoscaler", "status")  # published by nomad.serve's autoscaler
DELIVERY_ATTEMPTS = 5
FINAL_EDIT_TRIES = 60  # polls the final status edit may wait for a group's room
_VIDEO_EXT = (".mp4", ".webm", ".mov", ".mkv")
_ANIMATION_EXT = (".gif",)


def is_not_modified(exc: BadRequest) -> bool:
    """Telegram's answer to an edit with identical text: the message already says it."""
    return "not modified" in exc.message.lower()


class Tracker:
    """Owns the per-job tasks of one bot process."""

    def __init__(self, deps: BotDeps, sessions: Sessions, bot: Bot, pacer: Pacer) -> None:
        self.deps = deps
        self.pacer = pacer
        self.sessions = sessions
        self.bot = bot
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def track(self, job_id: str) -> None:
        """Start following a job (no-op if already followed, or once stopping: it stays pending)."""
        if self._closed:
            return
        task = self._tasks.get(job_id)
        if task is not None and not task.done():
            return
        self._tasks[job_id] = asyncio.get_running_loop().create_task(
            self._guarded(job_id), name=f"nomad-bot-job-{job_id}"
        )

    async def resume(self) -> int:
        """Follow every job still pending in the database (after a restart); returns how many."""
        ids = await self.sessions.pending()
        for job_id in ids:
            self.track(job_id)
        return len(ids)

    async def stop(self) -> None:
        """Cancel all tasks; undelivered jobs stay pending in the database."""
        self._closed = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def active(self) -> int:
        """Jobs being followed right now (tests driving a simulated clock wait for them)."""
        return sum(1 for t in self._tasks.values() if not t.done())

    async def wait(self, job_id: str) -> None:
        """Wait for a job's task to end (tests, graceful drains)."""
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def _guarded(self, job_id: str) -> None:
        try:
            await self._follow(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # one job's fault must never take the bot down
            log.exception("tracking job %s failed; it stays pending and resumes on restart", job_id)

    async def _follow(self, job_id: str) -> None:
        d = await self.sessions.delivery(job_id)
        if d is None or d.delivered:
            await self.sessions.remove_pending(job_id)
            return
        while True:
            try:
                job = await asyncio.to_thread(self.deps.queue.get, job_id)
            except JobNotFound:
                await self.sessions.remove_pending(job_id)
                return
            if job.status.finished:
                break
            waiting = job.status in (JobStatus.QUEUED, JobStatus.WAKING)
            pos = await asyncio.to_thread(self.deps.queue.position, job.id) if waiting else None
            if waiting and pos is None:  # it left the queue between the two reads: read it again
                continue
            cluster = await asyncio.to_thread(self.deps.queue.get_state, *AUTOSCALER_STATE)
            if waiting:
                await self._wait_notices(d, job, cluster)
            text = texts.status_text(job, pos, cluster, self.deps.clock(), d.lang)
            if text != d.shown and self.pacer.may_edit(d.chat_id, d.shown_at):
                await self._show(d, text)
            await self.deps.sleep(self.deps.poll_interval)
        await self._finish(d, job)

    async def _wait_notices(self, d: Delivery, job: Job, cluster: dict[str, Any] | None) -> None:
        """Bad news while waiting (budget, price cap, launch retries, a slow wake) as new messages.

        Edits are silent in Telegram; a user with the app closed must still
        learn that their job is stuck. Each kind is said once per job.
        """
        now = self.deps.clock()
        fresh = cluster is not None and not (
            isinstance(cluster.get("updated_at"), int | float)
            and now - float(cluster["updated_at"]) > texts.STALE_AFTER_S
        )
        blocked = texts.blocked_reason(cluster, job) if fresh else None
        if blocked is not None and f"wait:{blocked}" not in d.notices:
            log.info(
                "job %s waits: %s", job.id, job.detail or (cluster or {}).get("detail")
            )  # the operator's wording stays in the log
            reason = texts.t(d.lang, f"reason_{blocked}")
            await self._notify(
                d,
                f"wait:{blocked}",
                texts.t(d.lang, "wait_msg", job=texts.short(job.id), reason=reason),
            )
        if fresh and "slow" not in d.notices and texts.wake_is_slow(cluster, job, now):
            elapsed = texts.wake_elapsed(cluster, job, now) or 0.0
            log.info("job %s: wake slower than usual (%.0f s so far)", job.id, elapsed)
            await self._notify(
                d,
                "slow",
                texts.t(d.lang, "slow_msg", job=texts.short(job.id), elapsed=texts.coarse(elapsed)),
            )

    async def _notify(self, d: Delivery, kind: str, text: str) -> bool:
        """A NEW message (Telegram notifies for these, not for edits), sent once per ``kind``."""
        reply = (
            ReplyParameters(d.status_message_id, allow_sending_without_reply=True)
            if d.status_message_id
            else None
        )
        for _ in range(DELIVERY_ATTEMPTS):
            try:
                await self.bot.send_message(d.chat_id, texts.clip(text), reply_parameters=reply)
                break
            except RetryAfter as exc:
                await self.deps.sleep(_seconds(exc.retry_after))
            except TelegramError as exc:
                log.warning("notice %s for job %s failed: %s", kind, d.job_id, exc)
                return False
        else:
            return False
        d.notices.append(kind)
        await self.sessions.save_delivery(d)
        return True

    async def _show(self, d: Delivery, text: str) -> None:
        """Edit the status message (send a new one if it is gone), never raising."""
        try:
            if d.status_message_id is not None:
                await self.bot.edit_message_text(
                    text, chat_id=d.chat_id, message_id=d.status_message_id
                )
                await self._shown(d, text)
                return
        except BadRequest as exc:
            if is_not_modified(exc):
                await self._shown(d, text)
                return
            log.info(
                "status message of job %s not editable (%s); sending a new one",
                d.job_id,
                exc.message,
            )
        except TelegramError as exc:
            log.warning("status update of job %s failed: %s", d.job_id, exc)
            return
        try:
            msg = await self.bot.send_message(d.chat_id, text)
        except TelegramError as exc:
            log.warning("status message of job %s failed: %s", d.job_id, exc)
            return
        d.status_message_id = msg.message_id
        await self._shown(d, text)

    async def _shown(self, d: Delivery, text: str) -> None:
        d.shown, d.shown_at = text, self.deps.clock()
        await self.sessions.save_delivery(d)

    async def _finish(self, d: Delivery, job: Job) -> None:
        if job.status is JobStatus.SUCCEEDED:
            for attempt in range(DELIVERY_ATTEMPTS):
                try:
                    await self._deliver(d, job)
                    break
                except RetryAfter as exc:
                    await self.deps.sleep(_seconds(exc.retry_after))
                except (TelegramError, NomadError) as exc:
                    log.warning(
                        "delivering job %s failed (attempt %d): %s", job.id, attempt + 1, exc
                    )
                    await self.deps.sleep(self.deps.poll_interval * 2**attempt)
            else:
                log.error("job %s not delivered; it stays pending and resumes on restart", job.id)
                return
        elif job.status is JobStatus.FAILED and "failed" not in d.notices:
            log.warning("job %s failed: %s", job.id, job.error)  # operator detail; /stats too
            await self._notify(d, "failed", texts.failure_text(job, d.lang))
        elif job.status is JobStatus.CANCELLED and "cancelled" not in d.notices:
            text = texts.t(d.lang, "cancelled_msg", job=texts.short(job.id), workflow=job.workflow)
            await self._notify(d, "cancelled", text)
        d.delivered = True
        await self.sessions.save_delivery(d)
        await self._final_status(d, job)
        await self.sessions.remove_pending(job.id)

    async def _final_status(self, d: Delivery, job: Job) -> None:
        """The last status edit waits (bounded) for the chat's room: it is the least urgent."""
        text = texts.status_text(job, None, None, self.deps.clock(), d.lang)
        if text == d.shown:
            return
        for _ in range(FINAL_EDIT_TRIES):
            if self.pacer.may_edit(d.chat_id, d.shown_at):
                break
            await self.deps.sleep(max(1.0, self.deps.poll_interval))
        await self._show(d, text)

    async def _deliver(self, d: Delivery, job: Job) -> None:
        sent = d.sent
        for index, key in enumerate(job.outputs):
            if index < sent:
                continue  # sent before a restart
            data = await asyncio.to_thread(self.deps.storage.get_bytes, key)
            msg = await self._send_output(d, key, data)
            if msg is not None:
                await self.sessions.remember_result(d.chat_id, msg.message_id, key, job.id)
            d.sent = index + 1
            await self.sessions.save_delivery(d)
        if not job.outputs:
            await self.bot.send_message(
                d.chat_id, texts.t(d.lang, "no_output", job=texts.short(job.id))
            )
        await self._remember_for_chaining(d, job)

    async def _send_output(self, d: Delivery, key: str, data: bytes) -> Message | None:
        caption = texts.caption(d.prompt, d.seed, d.workflow)
        name = key.rsplit("/", 1)[-1] or "result"
        reply = (
            ReplyParameters(d.status_message_id, allow_sending_without_reply=True)
            if d.status_message_id
            else None
        )
        common: dict[str, Any] = {
            "caption": caption,
            "reply_parameters": reply,
            "reply_markup": result_buttons(d),
        }
        low = name.lower()
        if low.endswith(_ANIMATION_EXT) or (d.kind == "video" and low.endswith(".webp")):
            if len(data) > UPLOAD_LIMIT:
                return await self._too_big(d, len(data))
            return await self.bot.send_animation(d.chat_id, data, filename=name, **common)
        if d.kind == "video" or low.endswith(_VIDEO_EXT):
            if len(data) > UPLOAD_LIMIT:
                return await self._too_big(d, len(data))
            return await self.bot.send_video(
                d.chat_id, data, filename=name, supports_streaming=True, **common
            )
        if len(data) <= PHOTO_LIMIT:
            try:
                return await self.bot.send_photo(d.chat_id, data, filename=name, **common)
            except BadRequest as exc:  # e.g. PHOTO_INVALID_DIMENSIONS: a document always works
                log.info("photo refused (%s); sending job %s as a document", exc.message, d.job_id)
        if len(data) > UPLOAD_LIMIT:
            return await self._too_big(d, len(data))
        return await self.bot.send_document(d.chat_id, data, filename=name, **common)

    async def _too_big(self, d: Delivery, size: int) -> Message:
        log.warning("job %s: result of %d bytes is over Telegram's upload limit", d.job_id, size)
        return await self.bot.send_message(
            d.chat_id,
            texts.t(d.lang, "too_big_result", mb=f"{size / 2**20:.0f}", job=texts.short(d.job_id)),
        )

    async def _remember_for_chaining(self, d: Delivery, job: Job) -> None:
        if d.kind != "image" or not job.outputs:
            return
        session = await self.sessions.user(d.user_id)
        await self.sessions.save_user(d.user_id, UserSession(job.outputs[0], job.id, session.prefs))


def result_buttons(d: Delivery) -> InlineKeyboardMarkup:
    """♻️ again · 🎲 variation / ✏️ edit this · 📄 original file, under every result.

    ``callback_data`` carries the action and the job id (≤ 64 bytes); the
    button's own message tells which output it is about.
    """
    row1 = [
        InlineKeyboardButton(texts.t(d.lang, "btn_again"), callback_data=f"nb:again:{d.job_id}"),
        InlineKeyboardButton(texts.t(d.lang, "btn_variation"), callback_data=f"nb:var:{d.job_id}"),
    ]
    row2 = [
        InlineKeyboardButton(texts.t(d.lang, "btn_original"), callback_data=f"nb:orig:{d.job_id}")
    ]
    if d.kind == "image":
        row2.insert(
            0,
            InlineKeyboardButton(texts.t(d.lang, "btn_edit"), callback_data=f"nb:edit:{d.job_id}"),
        )
    return InlineKeyboardMarkup([row1, row2])


def _seconds(value: Any) -> float:
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)
