"""``nomad dev up|down|status``: the embedded SeaweedFS + registry stack (logic in nomad.dev)."""

from __future__ import annotations

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json


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
    """Stop the stack; data stays for the next `nomad dev up`."""
    from nomad.dev import Stack

    with console().status("stopping the local stack…"):
        Stack(ctx.data_dir).down()
    console().print("[green]✓[/] stopped")


@dev.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(ctx: Ctx, as_json: bool) -> None:
    """Each component's pid, liveness, health and URL. Exit 1 unless all are healthy."""
    from nomad.dev import Stack

    st = Stack(ctx.data_dir).status()
    if as_json:
        emit_json(st.to_dict())
    else:
        from rich.table import Table

        table = Table("component", "state", "pid", "url", "why", box=None)
        for c in st.components:
            state = (
                "[green]healthy" if c.healthy else ("[yellow]unhealthy" if c.alive else "[red]down")
            )
            table.add_row(c.name, state, str(c.pid or "-"), c.url or "-", c.detail or "")
        console().print(table)
    if not st.running:
        raise click.exceptions.Exit(1)
