"""Run the real ``nomad`` entry point in-process, as a user's shell would.

Unlike a bare ``CliRunner.invoke`` this goes through :func:`nomad.cli.errors.run_cli`,
so errors become the same messages and exit codes a user sees.
"""

from __future__ import annotations

from pathlib import Path


def run_nomad(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """``nomad --data-dir DATA_DIR ARGS…`` → (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from nomad.cli.errors import run_cli
    from nomad.cli.main import cli

    runner = CliRunner(mix_stderr=False)
    code = 0
    with runner.isolation() as (out, err):
        try:
            run_cli(cli, ["--data-dir", str(data_dir), *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        return code, out.getvalue().decode(), (err.getvalue() if err else b"").decode()
