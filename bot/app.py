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
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from nomad_bot import route, texts
from nomad_bot.deps import BotDeps
from nomad_bot.handlers import FIXED_COMMANDS, Handlers
from nomad_bot.pacing import CountingLimiter, Pacer
from nomad_bot.sessions import Sessions
from nomad_bot.tracker import Tracker

log = logging.getLogger("nomad.bot")

RUNTIME_KEY = "nomad"
PROXY_KEY = "nomad.proxy"  # the telegram leg's proxy, for error mapping (None: direct)


class BotRuntime:
    """What one running bot holds: deps, sessions, the tracker and the handlers."""

    def __init__(
        self,
        deps: BotDeps,
        app: Application[Any, Any, Any, Any, Any, Any],
        pacer: Pacer | None = None,
    ) -> None:
        self.deps = deps
        self.app = app
        self.sessions = Sessions(deps.queue)
        self.pacer = pacer or Pacer(deps.clock, deps.edit_interval)
        self.tracker = Tracker(deps, self.sessions, app.bot, self.pacer)
        self.handlers = Handlers(deps, self.sessions, self.tracker)

    async def on_init(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Command menu (enabled workflows only), then resume every pending delivery."""
        await app.bot.set_my_commands(menu(self.deps, await self.handlers.enabled()))
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
    proxy_deadline: float | None = None,
    max_retries: int = 3,
    wall_clock_limits: bool = True,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A ready-to-run Application; the runtime is at ``app.bot_data["nomad"]``.

    ``proxy``: the SOCKS5h URL of the telegram leg (``privacy.proxy_for``); its handshake
    gets ``proxy_deadline`` (default ``privacy.connect_timeout`` of this process).
    ``wall_clock_limits=False`` drops PTB's ``AIORateLimiter`` (which waits in
    real time) — only for tests that simulate time with ``BotDeps.clock``;
    the bot's own pacing (bot/pacing.py) stays on.
    """
    holder: dict[str, BotRuntime] = {}
    pacer = Pacer(deps.clock, deps.edit_interval)
    inner = AIORateLimiter(max_retries=max_retries) if wall_clock_limits else None

    async def post_init(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await holder["rt"].on_init(app)

    async def post_stop(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        await holder["rt"].on_stop(app)

    builder = (
        ApplicationBuilder()
        .token(token)
        .concurrent_updates(True)
        .rate_limiter(CountingLimiter(pacer, inner))
        .post_init(post_init)
        .post_stop(post_stop)
    )
    if base_url:
        builder = builder.base_url(base_url).base_file_url(
            base_file_url or base_url.replace("/bot", "/file/bot")
        )
    # never PTB's own proxy= (no handshake deadline) nor env proxies: see nomad_bot.route
    builder = builder.request(route.request(proxy, proxy_deadline)).get_updates_request(
        route.request(proxy, proxy_deadline, pool_size=1)
    )
    app = builder.build()
    rt = holder["rt"] = BotRuntime(deps, app, pacer)
    app.bot_data[RUNTIME_KEY] = rt
    app.bot_data[PROXY_KEY] = proxy
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
    commands = [c for c in deps.config.commands if c not in FIXED_COMMANDS]
    if commands:
        app.add_handler(CommandHandler(commands, h.generate))
    app.add_handler(CallbackQueryHandler(h.button, pattern=r"^nb:"))
    app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, h.media))
    app.add_handler(MessageHandler(filters.COMMAND, h.unknown))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, h.text))
    app.add_error_handler(h.on_error)


def menu(deps: BotDeps, kinds: dict[str, str], lang: str = "en") -> list[BotCommand]:
    """Telegram's command menu: the enabled commands first (edit ones say they need a photo)."""
    items = []
    for command, kind in sorted(kinds.items()):
        what = texts.t(lang, f"help_{kind}")
        key = "menu_edit" if kind == "edit" else "menu_image"
        items.append(BotCommand(command, texts.t(lang, key, what=what, cmd=command)[:256]))
    items += [
        BotCommand(c, texts.t(lang, f"menu_{c}")) for c in ("status", "cancel", "prefs", "help")
    ]
    return items
