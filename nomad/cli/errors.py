"""The one place that turns errors into messages and exit codes."""

from __future__ import annotations

import sys
from typing import Any

import click

from nomad.errors import NomadError


def run_cli(group: click.Group, argv: list[str] | None = None) -> Any:
    """Run the group; NomadError -> 'error: …' + hint on stderr and its exit code."""
    try:
        return group.main(args=argv, prog_name="nomad", standalone_mode=False)
    except NomadError as exc:
        click.secho(f"error: {exc.message}", fg="red", err=True)
        if exc.hint:
            click.echo(f"  → {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def not_available(feature: str, why: str, hint: str | None = None) -> None:
    """Raise the standard 'not available yet' error (exit 3) — never fake output."""
    from nomad.errors import NotAvailableError

    raise NotAvailableError(f"{feature} is not available: {why}", hint=hint)
