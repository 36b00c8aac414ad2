"""``nomad web``: the one-button page + JSON API front door (logic in nomad.web)."""

from __future__ import annotations

import os

import click

from nomad.cli.context import Ctx


@click.command("web")
@click.option("--listen", default=None, help="Bind address (default: web.listen, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: web.port, 8080).")
@click.pass_obj
def web(ctx: Ctx, listen: str | None, port: int | None) -> None:
    """Serve the web front door: a page with one button and a JSON API.

    Submitting needs a bearer token (web.tokens or NOMAD_WEB_TOKEN) because a
    job can wake a GPU. Jobs run when `nomad serve` works the queue.
    """
    try:
        from aiohttp import web as aioweb
    except ImportError:
        from nomad.errors import NotAvailableError

        raise NotAvailableError(
            "`nomad web` needs aiohttp", hint="pip install 'nomad-comfy[web]'"
        ) from None
    from nomad.web.app import make_app
    from nomad.web.deps import build_deps

    cfg = ctx.config
    env_token = os.environ.get("NOMAD_WEB_TOKEN")
    deps = build_deps(cfg, ctx.data_dir, extra_tokens=[env_token] if env_token else [])
    if not deps.tokens:
        click.echo("warning: no web.tokens / NOMAD_WEB_TOKEN: the page can't submit jobs", err=True)
    host, p = listen or cfg.web.listen, port or cfg.web.port
    click.echo(f"nomad web on http://{host}:{p}/  (workflows: {', '.join(deps.workflow_names)})")
    aioweb.run_app(make_app(deps), host=host, port=p, print=None)
