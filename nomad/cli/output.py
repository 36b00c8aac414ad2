"""Rendering helpers shared by commands: JSON for scripts, rich for people."""

from __future__ import annotations

import json
from typing import Any

import click


def emit_json(obj: Any) -> None:
    """Print stable, sorted JSON (scripts consume it; never includes secrets)."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def console() -> Any:
    """A rich Console on stderr-free stdout; imported lazily to keep --help fast."""
    from rich.console import Console

    return Console(highlight=False)
