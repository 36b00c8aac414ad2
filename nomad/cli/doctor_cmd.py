"""``nomad doctor``: check every capability nomad needs (logic in nomad.dev.doctor)."""

from __future__ import annotations

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json

_STYLE = {"ok": "[green]OK  [/]", "warn": "[yellow]WARN[/]", "fail": "[red]FAIL[/]"}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def doctor(ctx: Ctx, as_json: bool) -> None:
    """Check binaries, S3, registry, database, SkyPilot and privacy; exit 1 if any FAIL.

    An invalid nomad.yaml stops here with exit 2: the endpoints and keys to
    check come from it.
    """
    from nomad.dev.doctor import run_doctor

    report = run_doctor(ctx.config, ctx.data_dir)
    if as_json:
        emit_json(report.to_dict())
    else:
        con = console()
        for c in report.checks:
            con.print(f"{_STYLE[c.level]} {c.name:<16} {c.detail}", soft_wrap=True)
            if c.fix and c.level != "ok":
                con.print(f"     {'':<16} → {c.fix}", soft_wrap=True)
    if not report.ok:
        raise click.exceptions.Exit(1)
