"""``BotApiStub``: a Telegram Bot API *protocol double* on loopback.

It is not Telegram. It speaks enough of the Bot API wire protocol
(https://core.telegram.org/bots/api) for python-telegram-bot's real HTTP,
polling and file-download code to run against it unchanged:

- ``POST /bot<token>/<method>`` with form-encoded or multipart bodies;
- ``getUpdates`` long-polls and confirms offsets like the real server;
- ``sendPhoto``/``sendDocument``/``sendVideo`` accept multipart uploads and
  keep the bytes; ``getFile`` + ``GET /file/bot<token>/<path>`` serve files
  (files over 20 MB are refused as Telegram does);
- editing a message to the same text answers 400 "message is not modified";
- :meth:`inject` makes the next call(s) to a method fail with a 400/429
  (``parameters.retry_after``) so retry paths are exercised for real.

Tests play the user with :meth:`user_sends_text` / :meth:`user_sends_photo` /
:meth:`user_sends_document`, and wait on recorded calls with :meth:`wait_for`
(bounded, event-driven). Requires ``aiohttp`` (a dev dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # bots may download files up to 20 MB
DEFAULT_TOKEN = "123456:STUB-TOKEN-not-a-real-one"

# Fields PTB sends as plain strings; everything else is JSON-encoded on the wire.
_STRING_FIELDS = frozenset(
    {"text", "caption", "parse_mode", "file_id", "action", "url", "secret_token", "chat_id"}
)


@dataclass
class Upload:
    """One file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Call:
    """One Bot API request the bot made, as the stub saw it."""

    method: str
    params: dict[str, Any]
    files: dict[str, Upload] = field(default_factory=dict)
    status: int = 200  # what the stub answered
    result: Any = None
    description: str = ""  # the error description, when status != 200
    at: float = 0.0  # the stub's clock when the call arrived (virtual in simulated-time tests)
    peer: str | None = None  # the TCP peer's address (a SOCKS proxy's outgoing side, in proxy tests)


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None


class BotApiStub:
    """A loopback Bot API double. Use ``async with BotApiStub() as stub:``."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "nomad_stub_bot",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.clock = clock
        self.commands: list[dict[str, Any]] = []  # the last setMyCommands menu
        self.callback_answers: dict[str, dict[str, Any]] = {}  # query id -> answerCallbackQuery
        self.bot_user = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": "nomad (stub)",
            "username": bot_username,
        }
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}  # (chat, id) -> latest message
        self.edits: dict[tuple[int, int], list[str]] = {}  # (chat, id) -> every text it had
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, data)
        self._faults: dict[str, list[_Fault]] = {}
        self._queries: set[str] = set()
        self._languages: dict[int, str | None] = {}
        self._query_ids = itertools.count(1)
        self._cond: asyncio.Condition | None = None
        self._stopping = False
        self.webhook: dict[str, Any] | None = None  # what setWebhook registered
        self._runner: Any = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        from aiohttp import web

        self._cond = asyncio.Condition()
        self._stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Answer pending long polls at once (empty), then close: no wait for abandoned polls."""
        self._stopping = True
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiStub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url(...)``."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    # ---- test controls ---------------------------------------------------
    def inject(
        self,
        method: str,
        *,
        status: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``status``."""
        if description is None:
            description = (
                "Too Many Requests: retry after" if status == 429 else "Bad Request: injected"
            )
        fault = _Fault(status, description, retry_after if status == 429 else None)
        self._faults.setdefault(method, []).extend([fault] * times)

    def user_sends_text(
        self, user_id: int, text: str, *, reply_to: int | None = None, chat_id: int | None = None
    ) -> dict[str, Any]:
        """The user types ``text`` (commands get a bot_command entity, as Telegram does)."""
        msg = self._user_message(user_id, chat_id, reply_to)
        msg["text"] = text
        if entities := _command_entities(text):
            msg["entities"] = entities
        return self._push(msg)

    def user_presses_button(self, user_id: int, message: tuple[int, int], data: str) -> str:
        """The user taps an inline button with ``callback_data`` under the bot's ``message``
        (``(chat_id, message_id)``); returns the callback query id the bot must answer."""
        query_id = f"q{next(self._query_ids)}"
        self._queries.add(query_id)
        query = {
            "id": query_id,
            "from": self._user(user_id),
            "chat_instance": f"ci{message[0]}",
            "message": self.messages[message],
            "data": data,
        }
        self._updates.append({"update_id": next(self._update_ids), "callback_query": query})
        if self._cond is not None:
            asyncio.get_running_loop().create_task(self._notify())
        return query_id

    def buttons(self, message: tuple[int, int]) -> list[str]:
        """``callback_data`` of every inline button under one of the bot's messages."""
        markup = self.messages[message].get("reply_markup") or {}
        return [
            str(b.get("callback_data"))
            for row in markup.get("inline_keyboard", [])
            for b in row
            if b.get("callback_data")
        ]

    def user_sends_photo(
        self,
        user_id: int,
        data: bytes,
        *,
        caption: str | None = None,
        reply_to: int | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a photo (one size, with its real file_size)."""
        msg = self._user_message(user_id, chat_id, reply_to)
        msg["photo"] = [self._photo_size(self._store_file(data, "photos", "jpg"), data)]
        self._caption(msg, caption)
        return self._push(msg)

    def user_sends_document(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """The user sends a file as a document (e.g. a PDF, or an uncompressed PNG)."""
        msg = self._user_message(user_id, chat_id, None)
        file_id = self._store_file(data, "documents", file_name.rsplit(".", 1)[-1])
        msg["document"] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        self._caption(msg, caption)
        return self._push(msg)

    async def webhook_text(
        self, user_id: int, text: str, *, secret_token: str | None = None
    ) -> int:
        """Deliver a text update by POSTing to the registered webhook, as Telegram does.

        Sends the registered secret in ``X-Telegram-Bot-Api-Secret-Token``
        unless ``secret_token`` overrides it; returns the HTTP status.
        """
        import httpx

        assert self.webhook is not None, "the bot registered no webhook (setWebhook)"
        msg = self._user_message(user_id, None, None)
        msg["text"] = text
        if entities := _command_entities(text):
            msg["entities"] = entities
        self._keep(msg)
        update = {"update_id": next(self._update_ids), "message": msg}
        secret = secret_token if secret_token is not None else self.webhook.get("secret_token")
        headers = {"X-Telegram-Bot-Api-Secret-Token": str(secret)} if secret else {}
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            response = await client.post(self.webhook["url"], json=update, headers=headers)
        return response.status_code

    def user_language(self, user_id: int, code: str | None) -> None:
        """Set the ``language_code`` Telegram reports for a user (None: not reported)."""
        self._languages[user_id] = code

    def _user(self, user_id: int) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"}
        if self._languages.get(user_id):
            user["language_code"] = self._languages[user_id]
        return user

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[Call]:
        """Recorded calls of one method (successful ones unless ``ok_only=False``)."""
        return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def texts_to(self, chat_id: int) -> list[str]:
        """Every text the bot showed in a chat: sent messages, their edits, captions."""
        out: list[str] = []
        for c in self.calls:
            if c.status != 200 or str(c.params.get("chat_id")) != str(chat_id):
                continue
            text = c.params.get("text") or c.params.get("caption")
            if isinstance(text, str):
                out.append(text)
        return out

    def file_bytes(self, file_id: str) -> bytes:
        """Bytes of a file the stub holds (user uploads and bot uploads)."""
        return self._files[file_id][1]

    def mark(self) -> int:
        """A position in the call log; pass it as ``since`` to wait only for later calls."""
        return len(self.calls)

    async def wait_for(
        self, predicate: Callable[[Call], bool], *, since: int = 0, timeout: float = 15.0
    ) -> Call:
        """Wait (bounded) until a recorded call (from ``since`` on) satisfies ``predicate``."""
        assert self._cond is not None, "stub not started"
        found: list[Call] = []

        def check() -> bool:
            found[:] = [c for c in self.calls[since:] if predicate(c)]
            return bool(found)

        async with self._cond:
            await asyncio.wait_for(self._cond.wait_for(check), timeout)
        return found[0]

    async def wait_for_text(
        self, chat_id: int, needle: str, *, since: int = 0, timeout: float = 15.0
    ) -> Call:
        """Wait until the bot sent or edited a message in ``chat_id`` containing ``needle``."""

        def pred(c: Call) -> bool:
            text = c.params.get("text") or c.params.get("caption") or ""
            return (
                c.status == 200
                and str(c.params.get("chat_id")) == str(chat_id)
                and needle in str(text)
            )

        return await self.wait_for(pred, since=since, timeout=timeout)

    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot."""
        return len(self._updates)

    # ---- HTTP handlers ---------------------------------------------------
    async def _handle_method(self, request: Any) -> Any:
        from aiohttp import web

        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params, files = await _read_body(request)
        call = Call(method, params, files, at=self.clock(), peer=request.remote)
        fault = self._take_fault(method)
        if fault is not None:
            return await self._answer_error(
                call, fault.status, fault.description, fault.retry_after
            )
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return await self._answer_error(call, 404, "Not Found: method not found", None)
        try:
            result = await handler(params, files)
        except _ApiError as exc:
            return await self._answer_error(call, exc.status, exc.description, None)
        call.result = result
        await self._record(call)
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: Any) -> Any:
        from aiohttp import web

        path = request.match_info["path"]
        for file_path, data in self._files.values():
            if file_path == path and request.match_info["token"] == self.token:
                return web.Response(body=data)
        return web.Response(status=404, text="Not Found")

    async def _answer_error(
        self, call: Call, status: int, description: str, retry_after: int | None
    ) -> Any:
        from aiohttp import web

        call.status, call.description = status, description
        await self._record(call)
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    async def _record(self, call: Call) -> None:
        assert self._cond is not None
        async with self._cond:
            self.calls.append(call)
            self._cond.notify_all()

    def _take_fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method)
        return queue.pop(0) if queue else None

    # ---- Bot API methods -------------------------------------------------
    async def _m_getMe(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        return self.bot_user

    async def _m_getUpdates(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        assert self._cond is not None
        offset = int(p.get("offset") or 0)
        timeout = float(p.get("timeout") or 0)
        async with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._cond.wait_for(lambda: bool(self._updates) or self._stopping), timeout
                    )
            limit = int(p.get("limit") or 100)
            return [u for u in self._updates if u["update_id"] >= offset][:limit]

    async def _m_deleteWebhook(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        self.webhook = None
        return True

    async def _m_setWebhook(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        self.webhook = {"url": str(p.get("url", "")), "secret_token": p.get("secret_token")}
        return True

    async def _m_setMyCommands(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        self.commands = list(p.get("commands") or [])
        return True

    async def _m_answerCallbackQuery(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        query_id = str(p.get("callback_query_id"))
        if query_id not in self._queries:
            raise _ApiError(400, "Bad Request: query is too old and response timeout expired")
        self.callback_answers[query_id] = p
        return True

    async def _m_sendAnimation(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        return self._send_clip(p, f, "animation", "animations", "gif")

    async def _m_sendChatAction(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        return True

    async def _m_close(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        return True

    async def _m_sendMessage(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        text = str(p.get("text", ""))
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        msg = self._bot_message(p)
        msg["text"] = text
        return self._keep(msg)

    async def _m_editMessageText(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        key = (int(p["chat_id"]), int(p["message_id"]))
        msg = self.messages.get(key)
        if msg is None:
            raise _ApiError(400, "Bad Request: message to edit not found")
        text = str(p.get("text", ""))
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        if msg.get("text") == text:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message "
                "content and reply markup are exactly the same as a current "
                "content and reply markup of the message",
            )
        msg = {**msg, "text": text, "edit_date": int(time.time())}
        self.edits.setdefault(key, []).append(text)
        self.messages[key] = msg
        return msg

    async def _m_deleteMessage(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        self.messages.pop((int(p["chat_id"]), int(p["message_id"])), None)
        return True

    async def _m_sendPhoto(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        data = self._upload(p, f, "photo", 10 * 1024 * 1024)
        msg = self._bot_message(p)
        msg["photo"] = [self._photo_size(self._store_file(data, "photos", "jpg"), data)]
        return self._keep(self._with_caption(msg, p))

    async def _m_sendDocument(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        data = self._upload(p, f, "document", 50 * 1024 * 1024)
        name = f["document"].filename if "document" in f else "file"
        msg = self._bot_message(p)
        file_id = self._store_file(data, "documents", (name or "bin").rsplit(".", 1)[-1])
        msg["document"] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": name,
            "file_size": len(data),
        }
        return self._keep(self._with_caption(msg, p))

    async def _m_sendVideo(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        return self._send_clip(p, f, "video", "videos", "mp4")

    def _send_clip(
        self, p: dict[str, Any], f: dict[str, Upload], field: str, folder: str, ext: str
    ) -> Any:
        """sendVideo / sendAnimation: same upload limit (50 MB) and the same message shape."""
        data = self._upload(p, f, field, 50 * 1024 * 1024)
        msg = self._bot_message(p)
        file_id = self._store_file(data, folder, ext)
        msg[field] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "width": 64,
            "height": 64,
            "duration": 1,
            "file_size": len(data),
        }
        return self._keep(self._with_caption(msg, p))

    async def _m_getFile(self, p: dict[str, Any], f: dict[str, Upload]) -> Any:
        file_id = str(p.get("file_id"))
        if file_id not in self._files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path, data = self._files[file_id]
        if len(data) > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": len(data),
            "file_path": path,
        }

    # ---- helpers ---------------------------------------------------------
    def _upload(self, p: dict[str, Any], f: dict[str, Upload], name: str, limit: int) -> bytes:
        if name in f:
            data = f[name].data
        elif isinstance(p.get(name), str) and p[name] in self._files:
            data = self._files[p[name]][1]  # re-send by file_id
        else:
            raise _ApiError(400, f"Bad Request: there is no {name} in the request")
        if len(data) > limit:
            raise _ApiError(413, "Request Entity Too Large")
        caption = p.get("caption")
        if isinstance(caption, str) and len(caption) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        return data

    def _store_file(self, data: bytes, folder: str, ext: str) -> str:
        n = next(self._file_ids)
        file_id = f"stubfile{n}"
        self._files[file_id] = (f"{folder}/file_{n}.{ext}", data)
        return file_id

    @staticmethod
    def _photo_size(file_id: str, data: bytes) -> dict[str, Any]:
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "width": 64,
            "height": 64,
            "file_size": len(data),
        }

    def _bot_message(self, p: dict[str, Any]) -> dict[str, Any]:
        chat_id = int(p["chat_id"])
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "group" if chat_id < 0 else "private"},
            "from": self.bot_user,
        }
        markup = p.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:  # as Telegram: inline only
            msg["reply_markup"] = markup
        reply = p.get("reply_parameters")
        if isinstance(reply, dict) and (chat_id, reply.get("message_id")) in self.messages:
            msg["reply_to_message"] = self.messages[(chat_id, reply["message_id"])]
        return msg

    def _keep(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return msg

    @staticmethod
    def _with_caption(msg: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        if isinstance(p.get("caption"), str):
            msg["caption"] = p["caption"]
        return msg

    def _user_message(
        self, user_id: int, chat_id: int | None, reply_to: int | None
    ) -> dict[str, Any]:
        chat = chat_id if chat_id is not None else user_id
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat, user_id),
            "from": self._user(user_id),
        }
        if reply_to is not None:
            msg["reply_to_message"] = self.messages[(chat, reply_to)]
        return msg

    @staticmethod
    def _caption(msg: dict[str, Any], caption: str | None) -> None:
        if caption is not None:
            msg["caption"] = caption
            if entities := _command_entities(caption):
                msg["caption_entities"] = entities

    def _push(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Queue an update and wake long-pollers (sync: safe from the test's loop)."""
        self._keep(msg)
        self._updates.append({"update_id": next(self._update_ids), "message": msg})
        if self._cond is not None:
            asyncio.get_running_loop().create_task(self._notify())
        return msg

    async def _notify(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()


def _chat(chat_id: int, user_id: int) -> dict[str, Any]:
    if chat_id < 0:
        return {"id": chat_id, "type": "group", "title": f"group{-chat_id}"}
    return {"id": chat_id, "type": "private", "first_name": f"user{user_id}"}


class _ApiError(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    word = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": len(word)}]


async def _read_body(request: Any) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Decode a form-encoded or multipart body the way the Bot API does."""
    from aiohttp.web import FileField

    params: dict[str, Any] = {}
    files: dict[str, Upload] = {}
    if request.can_read_body:
        if request.content_type == "application/json":
            params = dict(await request.json())
            return params, files
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, FileField):
                files[key] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[key] = _decode(key, str(value))
    for key, value in request.query.items():
        params.setdefault(key, _decode(key, value))
    return params, files


def _decode(key: str, value: str) -> Any:
    if key in _STRING_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class VirtualClock:
    """Simulated time for a bot under test: ``BotDeps(clock=vc, sleep=vc.sleep)``.

    Nothing waits for real: :meth:`advance` moves time forward and wakes the
    sleepers that are due, then waits (bounded, in real time) until every
    task the test expects to be alive is asleep again — so a five-minute
    wake runs in a second or two and every decision sees a consistent "now".
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Return once the clock has been advanced by ``seconds``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + max(0.0, seconds), future))
        await future

    def asleep(self) -> int:
        """Tasks currently waiting in :meth:`sleep`."""
        return sum(1 for _, f in self._sleepers if not f.done())

    async def settle(self, alive: Callable[[], int], timeout: float = 15.0) -> None:
        """Wait (real time, bounded) until ``alive()`` tasks are all asleep."""
        deadline = time.monotonic() + timeout
        while self.asleep() < alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{alive()} task(s) expected asleep, {self.asleep()} are")
            await asyncio.sleep(0.002)

    async def advance(self, seconds: float, alive: Callable[[], int]) -> None:
        """Move time forward, wake what is due, and let it run until it sleeps again."""
        self.now += seconds
        due = [(at, f) for at, f in self._sleepers if at <= self.now]
        self._sleepers = [(at, f) for at, f in self._sleepers if at > self.now and not f.done()]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        await asyncio.sleep(0)
        await self.settle(alive)
