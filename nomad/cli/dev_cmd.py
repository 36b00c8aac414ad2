"""``nomad dev up|down|status``: the embedded SeaweedFS + registry stack (logic in nomad.dev)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json

if TYPE_CHECKING:
    from nomad.privacy.managed import ClientStatus


@click.group("dev")
def dev() -> None:
    """The embedded local stack: S3 (SeaweedFS) + registry on 127.0.0.1."""


@dev.command("up")
@click.option("--json", "as_json", is_flag=True, help="Print endpoints as JSON (no secrets).")
@click.pass_obj
def up(ctx: Ctx, as_json: bool) -> None:
    """Start the stack (a running, healthy stack is left alone)."""
    from nomad.dev import Stack

    con = console()
    with con.status("starting the local stack…") as spinner:
        info = Stack(ctx.data_dir).up(progress=lambda msg: spinner.update(msg))
    if as_json:
        emit_json(info.public_dict())
        return
    con.print(f"[green]✓[/] S3        {info.s3_endpoint}  (buckets: {info.outputs_bucket}, "
              f"{info.registry_bucket})")  # fmt: skip
    con.print(f"[green]✓[/] registry  {info.registry_url}")
    con.print(f"  data in {info.data_dir / 'stack'}; keys in credentials.json (0600)")


@dev.command("down")
@click.pass_obj
def down(ctx: Ctx) -> None:
    """Stop the stack (and a managed privacy client); data stays for the next `nomad dev up`."""
    from nomad.dev import Stack
    from nomad.errors import NomadError
    from nomad.privacy.managed import ManagedClient

    with console().status("stopping the local stack…"):
        Stack(ctx.data_dir).down()
        try:  # a broken nomad.yaml must not keep the stack from stopping
            client = ManagedClient(ctx.config.privacy, ctx.data_dir)
        except NomadError:
            client = None
        had_client = client is not None and client.pid() is not None
        if client is not None:
            client.stop()
    console().print("[green]✓[/] stopped" + (" (and the managed privacy client)" if had_client else ""))


@dev.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(ctx: Ctx, as_json: bool) -> None:
    """Each component's pid, liveness, health and URL, and the managed privacy client
    (privacy.mode: managed). Exit 1 unless the stack is healthy."""
    from nomad.dev import Stack
    from nomad.privacy.managed import managed_status

    st = Stack(ctx.data_dir).status()
    client = managed_status(ctx.config.privacy, ctx.data_dir)
    if as_json:
        emit_json({**st.to_dict(), "privacy": client.to_dict() if client else None})
    else:
        from rich.table import Column, Table

        url = Column("url", overflow="fold")  # a 62-character .anon address is never cut short
        table = Table("component", "state", "pid", url, "why", box=None)
        for c in st.components:
            state = (
                "[green]healthy" if c.healthy else ("[yellow]unhealthy" if c.alive else "[red]down")
            )
            table.add_row(c.name, state, str(c.pid or "-"), c.url or "-", c.detail or "")
        if client is not None:
            _privacy_rows(table, client)
        console().print(table)
    if not st.running:
        raise click.exceptions.Exit(1)


def _privacy_rows(table: Any, client: ClientStatus) -> None:
    """The managed anon/tor client, then one row per hidden service."""
    if client.healthy:
        state = "[green]healthy"
    else:
        state = "[yellow]starting" if client.running else "[red]not running"
    why = client.detail or ""
    if client.running:
        b = client.bootstrap
        boot = "control port silent" if b is None else f"bootstrap {b.progress}%"
        if b is not None and b.progress < 100:
            boot += f" ({b.summary})"
        socks = "SOCKS answers" if client.socks_problem is None else client.socks_problem
        why = f"{boot}; {socks}; restarts {'?' if client.restarts is None else client.restarts}"
    table.add_row(client.client, state, str(client.pid or "-"), client.proxy, why)
    for svc in client.services:
        url = f"http://{svc.address}" if svc.address else "-"
        table.add_row(f"  {svc.name}", "hidden service", "", url, svc.problem or f"→ {svc.target}")
