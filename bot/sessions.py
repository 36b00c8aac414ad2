"""Bot sessions and delivery bookkeeping, kept in nomad's queue database.

Everything lives in the queue's small state documents (``get_state`` /
``put_state``), so it survives restarts and works the same on SQLite and
PostgreSQL — no pickle files, no PTB persistence:

- ``bot.user/<user id>``: last result (for ``/qwen`` chaining), last job, preferences;
- ``bot.delivery/<job id>``: where a job's result goes and whether it went;
- ``bot/pending``: ids of jobs whose result is not delivered yet (resumed on start);
- ``bot.result/<chat>:<message>``: which stored output a sent photo shows, so
  replying to it edits the original bytes, not Telegram's recompressed copy.

The queue API is synchronous; every call here runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any

from nomad.queue.base import JobQueue

USER = "bot.user"
DELIVERY = "bot.delivery"
RESULT = "bot.result"
PENDING = ("bot", "pending")


@dataclass
class Delivery:
    """Where and how one job's result is delivered."""

    job_id: str
    chat_id: int
    user_id: int
    workflow: str
    prompt: str
    seed: int | None = None
    kind: str = "image"  # image | video
    status_message_id: int | None = None
    sent: int = 0  # outputs already sent (a restart resumes after them)
    delivered: bool = False
    lang: str = "en"  # catalogue language (from the user's Telegram language_code)
    shown: str | None = None  # what the status message says now (never edited to the same)
    shown_at: float | None = None  # when it last changed (edits are spaced; bot/pacing.py)
    notices: list[str] = field(default_factory=list)  # new messages already sent (once each)
    message_id: int | None = None  # the user's command message

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Delivery:
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
        return cls(**known)


@dataclass
class UserSession:
    """What the bot remembers about one user."""

    last_output: str | None = None  # storage key of the last delivered result
    last_job: str | None = None
    prefs: dict[str, Any] = field(default_factory=dict)


class Sessions:
    """Async facade over the queue's state documents."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._pending_lock = asyncio.Lock()

    async def _get(self, scope: str, key: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.queue.get_state, scope, key)

    async def _put(self, scope: str, key: str, value: dict[str, Any]) -> None:
        await asyncio.to_thread(self.queue.put_state, scope, key, value)

    async def user(self, user_id: int) -> UserSession:
        doc = await self._get(USER, str(user_id)) or {}
        return UserSession(
            doc.get("last_output"), doc.get("last_job"), dict(doc.get("prefs") or {})
        )

    async def save_user(self, user_id: int, session: UserSession) -> None:
        await self._put(USER, str(user_id), asdict(session))

    async def delivery(self, job_id: str) -> Delivery | None:
        doc = await self._get(DELIVERY, job_id)
        return Delivery.from_doc(doc) if doc else None

    async def save_delivery(self, d: Delivery) -> None:
        await self._put(DELIVERY, d.job_id, asdict(d))

    async def add_pending(self, job_id: str) -> None:
        async with self._pending_lock:
            ids = await self.pending()
            if job_id not in ids:
                await self._put(*PENDING, {"jobs": [*ids, job_id]})

    async def remove_pending(self, job_id: str) -> None:
        async with self._pending_lock:
            ids = await self.pending()
            if job_id in ids:
                await self._put(*PENDING, {"jobs": [i for i in ids if i != job_id]})

    async def pending(self) -> list[str]:
        doc = await self._get(*PENDING) or {}
        return [str(i) for i in doc.get("jobs", [])]

    async def remember_result(self, chat_id: int, message_id: int, key: str, job_id: str) -> None:
        await self._put(RESULT, f"{chat_id}:{message_id}", {"key": key, "job": job_id})

    async def result_job(self, chat_id: int, message_id: int) -> str | None:
        doc = await self._get(RESULT, f"{chat_id}:{message_id}")
        return str(doc["job"]) if doc and doc.get("job") else None

    async def result_key(self, chat_id: int, message_id: int) -> str | None:
        doc = await self._get(RESULT, f"{chat_id}:{message_id}")
        return str(doc["key"]) if doc and doc.get("key") else None
