"""Placeholder: these commands are not built yet; they say so (exit 3) instead of faking output."""

from __future__ import annotations

import click

from nomad.cli.errors import not_available


@click.command("plan", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def plan(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad plan`", "not implemented in this release")


@click.command("up", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def up(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad up`", "not implemented in this release")


@click.command("down", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def down(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad down`", "not implemented in this release")


@click.command("status", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def status(args: tuple[str, ...]) -> None:
    """(not available yet)"""
    not_available("`nomad status`", "not implemented in this release")
