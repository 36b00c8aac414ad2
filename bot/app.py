"""Build the python-telegram-bot Application for a nomad deployment.

``build_application`` wires the handlers to a real PTB ``Application`` with
concurrent updates and ``AIORateLimiter(max_retries=…)`` (PTB's default is no
retries). ``base_url``/``base_file_url`` point it at another Bot API server
(a self-hosted one, or ``nomad.testing.botapi.BotApiStub`` in tests).
``post_init`` registers the command menu and resumes undelivered jobs;
``post_stop`` cancels the per-job tasks (they resume on the next start).
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    MessageHandler,
    filters,
)

from nomad_bot.deps import BotDeps
from nomad_bot.handlers import Handlers
from nomad_bot.sessions import Sessions
from nomad_bot.tracker import Tracker

log = logging.getLogger("nomad.bot")

RUNTIME_KEY = "nomad"
_FIXED = {"start", "help", "status", "cancel", "prefs", "up", "down", "stats"}


class BotRuntime:
    """What one running bot holds: deps, sessions, the tracker and the handlers."""

    def __init__(self, deps: BotDeps, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        self.deps = deps
        self.app = app
        self.sessions = Sessions(deps.queue)
        self.tracker = Tracker(deps, self.sessions, app.bot)
        self.handlers = Handlers(deps, self.sessions, self.tracker)

    async def on_init(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Command menu, then resume every delivery still pending in the database."""
        await app.bot.set_my_commands(menu(self.deps))
        resumed = await self.tracker.resume()
        if resumed:
            log.info("resumed %d undelivered job(s)", resumed)

    async def on_stop(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await self.tracker.stop()


def build_application(
    deps: BotDeps,
    *,
    token: str,
    base_url: str | None = None,
    base_file_url: str | None = None,
    proxy: str | None = None,
    max_retries: int = 3,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A ready-to-run Application; the runtime is at ``app.bot_data["nomad"]``."""
    holder: dict[str, BotRuntime] = {}

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await holder["rt"].on_init(app)

    async def post_stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await holder["rt"].on_stop(app)

    builder = (
        ApplicationBuilder()
        .token(token)
        .concurrent_updates(True)
        .rate_limiter(AIORateLimiter(max_retries=max_retries))
        .post_init(post_init)
        .post_stop(post_stop)
    )
    if base_url:
        builder = builder.base_url(base_url).base_file_url(
            base_file_url or base_url.replace("/bot", "/file/bot")
        )
    if proxy:
        builder = builder.proxy(proxy).get_updates_proxy(proxy)
    app = builder.build()
    rt = holder["rt"] = BotRuntime(deps, app)
    app.bot_data[RUNTIME_KEY] = rt
    _register(app, rt.handlers, deps)
    return app


def _register(app: Application[Any, Any, Any, Any, Any, Any], h: Handlers, deps: BotDeps) -> None:
    app.add_handler(CommandHandler("start", h.start))
    app.add_handler(CommandHandler("help", h.help))
    app.add_handler(CommandHandler("status", h.status))
    app.add_handler(CommandHandler("cancel", h.cancel))
    app.add_handler(CommandHandler("up", h.admin_up))
    app.add_handler(CommandHandler("down", h.admin_down))
    app.add_handler(CommandHandler("stats", h.stats))
    app.add_handler(CommandHandler("prefs", h.prefs))
    commands = [c for c in deps.config.commands if c not in _FIXED]
    if commands:
        app.add_handler(CommandHandler(commands, h.generate))
    app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, h.media))
    app.add_handler(MessageHandler(filters.COMMAND, h.unknown))
    app.add_error_handler(h.on_error)


def menu(deps: BotDeps) -> list[BotCommand]:
    """The command list shown in Telegram's menu (deployment commands first)."""
    items = [
        BotCommand(c, f"{w} — /{c} your prompt"[:256])
        for c, w in sorted(deps.config.commands.items())
        if c not in _FIXED
    ]
    items += [
        BotCommand("status", "the GPU, your jobs, your place in the queue"),
        BotCommand("cancel", "cancel your last job"),
        BotCommand("prefs", "your default options, e.g. --ar 16:9"),
        BotCommand("help", "what I can do"),
    ]
    return items
