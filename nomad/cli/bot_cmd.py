"""``nomad bot``: run the Telegram front door (long polling by default).

Thin: checks the extra, reads the config, hands over to :func:`bot.run.run_bot`.
The token comes from ``NOMAD_BOT_TOKEN`` (or ``bot.token``) and is never printed.
"""

from __future__ import annotations

import click

from nomad.cli.context import Ctx

pass_ctx = click.make_pass_decorator(Ctx)


@click.command("bot")
@click.option(
    "--webhook",
    "mode",
    flag_value="webhook",
    default=None,
    help="Serve a webhook (bot.webhook: url, listen, port, secret_token) instead of polling.",
)
@click.option(
    "--polling",
    "mode",
    flag_value="polling",
    help="Long-poll Telegram (default; works behind NAT).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check queue, storage, workflows and the token (Telegram getMe); exit.",
)
@pass_ctx
def bot(ctx: Ctx, mode: str | None, check: bool) -> None:
    """Run the Telegram bot: /f, /qwen, /status … enqueue jobs on nomad's queue.

    Set NOMAD_BOT_TOKEN, list user ids in bot.allowlist, run `nomad serve` for
    the workers. Stop with Ctrl-C: queued jobs stay queued and undelivered
    results are sent on the next start.
    """
    try:
        import telegram  # noqa: F401  (only to detect the extra)
    except ImportError:
        from nomad.cli.errors import not_available

        not_available(
            "`nomad bot`",
            "python-telegram-bot is not installed",
            hint="pip install 'nomad-comfy[bot]'",
        )
    from nomad_bot.run import bot_token, build_deps, check_token, run_bot

    cfg = ctx.config
    if check:
        bot_token(cfg)
        deps = build_deps(cfg, ctx.data_dir)
        try:
            deps.queue.counts()  # a real round trip, not just an open handle
            check_storage = getattr(deps.storage, "check", None)
            if check_storage is not None:
                check_storage()  # HEAD bucket: endpoint, keys and bucket
            names = sorted(set(cfg.bot.commands.values()))
            for name in names:
                deps.load_workflow(name)
        finally:
            deps.queue.close()
        username = check_token(cfg)  # a real getMe: the token works, Telegram is reachable
        click.echo(
            f"ok: Telegram knows the token (@{username}), queue and storage reachable, "
            f"{len(names)} workflows bound"
        )
        return
    click.echo(f"nomad bot: {mode or cfg.bot.mode}; Ctrl-C to stop", err=True)
    run_bot(cfg, ctx.data_dir, mode=mode)
