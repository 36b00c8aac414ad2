"""Placeholder: these commands are not built yet; they say so (exit 3) instead of faking output."""

from __future__ import annotations

import click

from nomad.cli.errors import not_available


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad run`", "not implemented in this release")


@click.command("workflows", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def workflows(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad workflows`", "not implemented in this release")
