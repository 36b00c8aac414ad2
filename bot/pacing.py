"""How often the bot may speak: per-message edit spacing and a per-group budget.

Telegram sends no notification for edits, allows about one message a second
per chat and 20 a minute per group; PTB's ``AIORateLimiter`` delays what goes
over, so a chatty status message pushes results back. The rule here: status
edits are *optional* (skipped when too soon, sent later with the then-current
text) and in a group they only go out while the chat has room in its last
minute; results, refusals and bad news are *mandatory* and never wait for us.

:class:`CountingLimiter` sits in PTB's request pipeline and records every call
that targets a chat, so the budget sees handlers' replies too, not only the
tracker's own sends. Time comes from an injected clock (tests simulate a
five-minute wake without waiting five minutes).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.ext import BaseRateLimiter

EDIT_INTERVAL_S = 5.0  # at least this long between two edits of one message
GROUP_EDIT_INTERVAL_S = 15.0  # in groups each status message speaks less often
GROUP_WINDOW_S = 60.0
GROUP_LIMIT = 20  # Telegram's guideline: 20 messages a minute per group
GROUP_OPTIONAL = 10  # status edits only while the group's last minute had fewer sends
_CHAT_METHODS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAnimation",
        "editMessageReplyMarkup",
        "editMessageCaption",
        "copyMessage",
    }
)


def is_group(chat_id: int) -> bool:
    """Group and channel ids are negative in the Bot API."""
    return chat_id < 0


class Pacer:
    """Per-chat send log and the rule for optional status edits."""

    def __init__(self, clock: Callable[[], float], edit_interval: float = EDIT_INTERVAL_S) -> None:
        self.clock = clock
        self.edit_interval = edit_interval
        self._sent: dict[int, collections.deque[float]] = {}

    def record(self, chat_id: int) -> None:
        """One message sent or edited in a group now (private chats need no budget)."""
        if not is_group(chat_id):
            return
        self._sent.setdefault(chat_id, collections.deque()).append(self.clock())
        self.recent(chat_id)  # drop what fell out of the window: memory stays bounded
        if len(self._sent) > 1000:  # many groups: forget the quiet ones
            for quiet in [c for c, log in self._sent.items() if not log]:
                del self._sent[quiet]

    def recent(self, chat_id: int) -> int:
        """Sends and edits in ``chat_id`` during the last minute."""
        log = self._sent.get(chat_id)
        if not log:
            return 0
        edge = self.clock() - GROUP_WINDOW_S
        while log and log[0] <= edge:
            log.popleft()
        return len(log)

    def may_edit(self, chat_id: int, last_at: float | None) -> bool:
        """May a status message last changed at ``last_at`` be edited now?"""
        interval = self.edit_interval
        if is_group(chat_id):
            interval = max(interval, GROUP_EDIT_INTERVAL_S)
        if last_at is not None and self.clock() - last_at < interval:
            return False
        return not (is_group(chat_id) and self.recent(chat_id) >= GROUP_OPTIONAL)


class CountingLimiter(BaseRateLimiter[int]):
    """Records every chat-bound call in the :class:`Pacer`, then defers to PTB's limiter."""

    def __init__(self, pacer: Pacer, inner: BaseRateLimiter[Any] | None) -> None:
        self.pacer = pacer
        self.inner = inner

    async def initialize(self) -> None:
        if self.inner is not None:
            await self.inner.initialize()

    async def shutdown(self) -> None:
        if self.inner is not None:
            await self.inner.shutdown()

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Any]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Any:
        chat = data.get("chat_id")
        if endpoint in _CHAT_METHODS and isinstance(chat, int | str):
            with contextlib.suppress(ValueError):  # "@channelname": not a numeric chat
                self.pacer.record(int(chat))
        if self.inner is None:
            return await callback(*args, **kwargs)
        return await self.inner.process_request(
            callback, args, kwargs, endpoint, data, rate_limit_args
        )
