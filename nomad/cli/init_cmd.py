"""``nomad init [DIR]``: write the example nomad.yaml (logic in nomad.dev.init)."""

from __future__ import annotations

import click

from nomad.cli.output import console


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--force", is_flag=True, help="Overwrite an existing nomad.yaml.")
def init(directory: str, force: bool) -> None:
    """Write an example nomad.yaml (Flux schnell + Qwen image edit 2509) into DIRECTORY."""
    from nomad.dev.init import write_example

    path = write_example(directory, force=force)
    console().print(f"[green]✓[/] wrote {path}")
    console().print("  next: `nomad doctor`, then `nomad dev up` and `nomad build`")
