"""Placeholder: these commands are not built yet; they say so (exit 3) instead of faking output."""

from __future__ import annotations

import click

from nomad.cli.errors import not_available


@click.command("serve", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad serve`", "not implemented in this release")


@click.command("submit", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def submit(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad submit`", "not implemented in this release")


@click.command("jobs", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def jobs(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad jobs`", "not implemented in this release")
