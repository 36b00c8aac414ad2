"""Placeholder: these commands are not built yet; they say so (exit 3) instead of faking output."""

from __future__ import annotations

import click

from nomad.cli.errors import not_available


@click.command("build", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def build(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad build`", "not implemented in this release")
