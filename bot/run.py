"""Run the bot for a deployment: long polling by default, webhook when configured.

``build_deps`` assembles the real pieces from nomad.yaml (queue, S3, workflow
bindings, launch for admins). ``running`` drives the PTB lifecycle inside an
existing event loop (``nomad serve`` can embed the bot; tests use it too);
``run_bot`` is the blocking entry point behind ``nomad bot``.

The token is never logged: httpx logs request URLs (which contain it) at
INFO, so its logger is kept at WARNING and every handler redacts the token.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from nomad import privacy
from nomad.config.schema import NomadConfig, WebhookConfig
from nomad.errors import ConfigError, NotAvailableError
from nomad_bot import route
from nomad_bot.app import PROXY_KEY, RUNTIME_KEY, BotRuntime, build_application
from nomad_bot.deps import BotDeps, WorkflowLike

log = logging.getLogger("nomad.bot")


class LaunchAdmin:
    """/up and /down through the cluster ledger (nomad.launch.stop_all / resume): /down stops
    every cluster of the project, serve's included, and holds serve's launches; /up lifts the
    hold and wakes a GPU through the running serve (or launches one when none runs)."""

    def __init__(self, cfg: NomadConfig, data_dir: Path, backend_for: Any = None) -> None:
        self.cfg, self.data_dir = cfg, data_dir
        self.backend_for = backend_for or self._backend

    def _backend(self, name: str) -> Any:
        from nomad import backends

        return backends.get_backend(name, self.cfg, self.data_dir)

    def up(self) -> str:
        from nomad import launch

        return f"Up: {launch.resume(self.cfg, self.data_dir, self.backend_for)}."

    def down(self) -> str:
        from nomad import launch

        reports = launch.stop_all(self.cfg, self.data_dir, self.backend_for, by="an admin (/down)")
        if not reports:
            return "Down: nothing was running (new launches are on hold until /up)."
        parts = [
            f"{r.info.name}"
            + (f", spent ${r.spend_usd:.2f}" if r.spend_usd is not None else "")
            + (f" — {r.info.detail}" if r.info.state.value != "gone" else "")
            for r in reports
        ]
        return "Down: " + "; ".join(parts) + ". New launches are on hold until /up."


def build_deps(cfg: NomadConfig, data_dir: Path) -> BotDeps:
    """The real queue, storage, workflows and launch admin for this deployment."""
    from nomad.dev.defaults import resolve_storage
    from nomad.queue import open_queue
    from nomad.storage import Storage

    return BotDeps(
        config=cfg.bot,
        queue=open_queue(cfg, data_dir),
        storage=Storage(resolve_storage(cfg, data_dir)),
        load_workflow=workflow_loader(cfg.workflows.dirs),
        admin=LaunchAdmin(cfg, data_dir),
    )


def workflow_loader(dirs: Sequence[str | Path] = ()) -> Any:
    """``nomad.workflows.load_workflow`` over the built-ins and ``dirs`` (``workflows.dirs``),
    or a clear error if this build has none."""
    try:
        from nomad.workflows import load_workflow
    except ImportError as exc:
        raise NotAvailableError(
            "workflow bindings (nomad.workflows) are not available in this build",
            hint="install a nomad release that ships workflows/",
        ) from exc

    def load(name: str) -> WorkflowLike:
        wf: WorkflowLike = load_workflow(name, dirs)
        return wf

    return load


def bot_token(cfg: NomadConfig) -> str:
    """The token from NOMAD_BOT_TOKEN (or bot.token); a clear error when missing."""
    if cfg.bot.token is None or not cfg.bot.token.get_secret_value().strip():
        raise ConfigError(
            "no Telegram bot token",
            hint="export NOMAD_BOT_TOKEN=<token from @BotFather> (keep it out of nomad.yaml)",
        )
    return cfg.bot.token.get_secret_value().strip()


class RedactToken(logging.Filter):
    """Replace the bot token in every log record (PTB/httpx put it in URLs)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<token>"), None
        if record.exc_info and not record.exc_text:  # tracebacks carry request URLs too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text and self.token in record.exc_text:
            record.exc_text = record.exc_text.replace(self.token, "<token>")
        if record.stack_info and self.token in record.stack_info:
            record.stack_info = record.stack_info.replace(self.token, "<token>")
        return True


def protect_token(token: str) -> None:
    """Keep the token out of logs: quiet httpx, redact on every root handler."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    redact = RedactToken(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)


@contextlib.asynccontextmanager
async def running(
    app: Any, *, poll_timeout: int = 30, webhook: WebhookConfig | None = None
) -> AsyncIterator[BotRuntime]:
    """Run an Application inside the current loop until the block exits (embedding, tests).

    Long polling unless ``webhook`` is given (then PTB's webhook server listens
    and registers the URL with its secret token).
    """
    rt: BotRuntime = app.bot_data[RUNTIME_KEY]
    proxy = app.bot_data.get(PROXY_KEY)
    try:
        await app.initialize()
    except Exception as exc:
        route.raise_proxy_failure(exc, proxy)
        raise
    try:
        try:
            await rt.on_init(app)  # post_init only runs inside run_polling; call it here
            if webhook is not None:
                _need_webhook_extra()
                await app.updater.start_webhook(**_webhook_kwargs(webhook))
            else:
                await app.updater.start_polling(poll_interval=0.0, timeout=poll_timeout)
            await app.start()
        except Exception as exc:
            route.raise_proxy_failure(exc, proxy)
            raise
        try:
            yield rt
        finally:  # same order as run_polling: no new updates, handlers done, then trackers
            await app.updater.stop()
            await app.stop()
            await rt.on_stop(app)
    finally:
        await app.shutdown()


def run_bot(cfg: NomadConfig, data_dir: Path, *, mode: str | None = None) -> None:
    """Blocking: run until Ctrl-C / SIGTERM. Queued jobs stay in the queue; deliveries resume."""
    token = bot_token(cfg)
    protect_token(token)
    mode = mode or cfg.bot.mode
    hook = cfg.bot.webhook
    if mode == "webhook":
        if hook is None:
            raise ConfigError(
                "webhook mode needs a bot.webhook section",
                hint="add bot.webhook: {url: https://…, secret_token: …} or use polling",
            )
        _need_webhook_extra()
    deps = build_deps(cfg, data_dir)
    proxy = privacy.proxy_for(cfg.privacy, "telegram")
    app = build_application(
        deps,
        token=token,
        base_url=cfg.bot.base_url,
        proxy=proxy,
        proxy_deadline=cfg.privacy.connect_timeout,
    )
    try:
        if mode == "webhook" and hook is not None:
            app.run_webhook(**_webhook_kwargs(hook))
        else:
            app.run_polling()
    except Exception as exc:  # a dead proxy at start-up is exit 8 naming it, not a traceback
        route.raise_proxy_failure(exc, proxy)
        raise
    finally:
        deps.queue.close()


def _need_webhook_extra() -> None:
    """PTB's webhook server needs tornado (its ``webhooks`` extra); polling does not."""
    try:
        import tornado  # noqa: F401
    except ImportError:
        raise NotAvailableError(
            "webhook mode needs python-telegram-bot's webhook server (tornado)",
            hint="pip install 'python-telegram-bot[webhooks]', or use polling (the default)",
        ) from None


def _webhook_kwargs(hook: WebhookConfig) -> dict[str, Any]:
    """PTB webhook server arguments; the secret makes it refuse updates not from Telegram."""
    secret = hook.secret_token.get_secret_value() if hook.secret_token else None
    return {
        "listen": hook.listen,
        "port": hook.port,
        "url_path": _url_path(hook.url),
        "webhook_url": hook.url,
        "secret_token": secret,
    }


def _url_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")


def check_token(cfg: NomadConfig, *, timeout: float = 15.0) -> str:
    """Ask Telegram (``getMe``) whether the token works; returns the bot's @username.

    ``InvalidToken`` ⇒ ConfigError (exit 2); unreachable ⇒ NotAvailableError
    (exit 3). Goes through privacy.proxy when privacy is on, like the bot.
    """
    import asyncio

    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    token = bot_token(cfg)
    proxy = privacy.proxy_for(cfg.privacy, "telegram")
    request = route.request(
        proxy, cfg.privacy.connect_timeout, connect_timeout=timeout, read_timeout=timeout
    )
    kwargs: dict[str, Any] = {"request": request}
    if cfg.bot.base_url:
        kwargs["base_url"] = cfg.bot.base_url

    async def ask() -> str:
        async with Bot(token, **kwargs) as bot:  # initialize() calls getMe
            return str(bot.username)

    try:
        return asyncio.run(ask())
    except InvalidToken:
        raise ConfigError(
            "Telegram refused the bot token (getMe)",
            hint="check NOMAD_BOT_TOKEN — copy it again from @BotFather",
        ) from None
    except TelegramError as exc:
        failure = route.proxy_failure(exc, proxy)
        if failure is not None:
            raise failure from None
        where = cfg.bot.base_url or "api.telegram.org"
        message = str(exc).replace(token, "<token>")
        raise NotAvailableError(
            f"cannot reach the Telegram Bot API at {where} (getMe): {message}",
            hint="check the network (and privacy.proxy)",
        ) from None
