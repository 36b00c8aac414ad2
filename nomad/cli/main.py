"""The ``nomad`` command: a lazy Click group.

Subcommands live in their own modules and are imported only when invoked, so
``nomad --help`` stays fast and works without any extra installed. Errors
are turned into messages and exit codes in :func:`nomad.cli.errors.run_cli`.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from nomad.cli.context import Ctx
from nomad.resources import DISTRIBUTION

# name -> (module, attribute, one-line help shown by `nomad --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": ("nomad.cli.init_cmd", "init", "Write an example nomad.yaml (Flux + Qwen edit)."),
    "quickstart": ("nomad.cli.quickstart_cmd", "quickstart", "The offline core loop: stack → build → push → verify → plan."),
    "doctor": ("nomad.cli.doctor_cmd", "doctor", "Check every capability nomad needs, with fixes."),
    "dev": ("nomad.cli.dev_cmd", "dev", "The embedded local stack: S3 (SeaweedFS) + registry."),
    "build": ("nomad.cli.build_cmd", "build", "Build the OCI image: base + one layer per model file."),
    "base": ("nomad.cli.base_cmd", "base", "The ComfyUI runtime base: known profiles, `base build` (buildx)."),
    "push": ("nomad.cli.push_cmd", "push", "Push the built image; unchanged blobs move zero bytes."),
    "registry": ("nomad.cli.registry_cmd", "registry", "Registry helpers: S3 storage config, bucket, access."),
    "plan": ("nomad.cli.launch_cmd", "plan", "Rank GPU offers by $/hour (and $/image with benchmarks)."),
    "up": ("nomad.cli.launch_cmd", "up", "Launch the image on the cheapest GPU that fits."),
    "down": ("nomad.cli.launch_cmd", "down", "Tear the cluster down; report time up and spend."),
    "status": ("nomad.cli.launch_cmd", "status", "Cluster state, endpoints, uptime, spend, queue."),
    "run": ("nomad.cli.run_cmd", "run", "Run one workflow against a ComfyUI endpoint."),
    "bench": ("nomad.cli.bench_cmd", "bench", "Benchmark workflows per GPU; compare; $/image."),
    "workflows": ("nomad.cli.run_cmd", "workflows", "List and validate workflows and their bindings."),
    "serve": ("nomad.cli.serve_cmd", "serve", "Queue + autoscaler + workers in one process."),
    "submit": ("nomad.cli.serve_cmd", "submit", "Enqueue a workflow job from the shell."),
    "jobs": ("nomad.cli.serve_cmd", "jobs", "List, inspect and cancel jobs."),
    "bot": ("nomad.cli.bot_cmd", "bot", "Run the Telegram bot front door."),
    "batch": ("nomad.cli.batch_cmd", "batch", "Cron-triggered batch jobs (e.g. a daily wallpaper)."),
    "node": ("nomad.cli.node_cmd", "node", "GPU node side of a wake: fetch weights into a digest cache."),
    "web": ("nomad.cli.web_cmd", "web", "The web front door: one-button page + JSON API."),
    "simulate": ("nomad.cli.simulate_cmd", "simulate", "Replay a request trace: what scale-to-zero saves, what users wait."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(spec[0])
        cmd = getattr(module, spec[1])
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{spec[0]}.{spec[1]} is not a click command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the table without importing them (keeps --help fast)."""
        rows = [(name, spec[2]) for name, spec in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
              envvar="NOMAD_CONFIG", help="nomad.yaml to use (default: ./nomad.yaml).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data dir (default: $NOMAD_DATA_DIR or $XDG_DATA_HOME/nomad).")
@click.option("--verbose", "-v", count=True, help="More logs (-vv for debug).")
@click.version_option(package_name=DISTRIBUTION)  # the dist is nomad-comfy
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, data_dir: str | None, verbose: int) -> None:
    """nomad — ComfyUI on the cheapest GPU, weights baked in, scale to zero.

    Exit codes: 0 ok, 1 error, 2 usage/config, 3 not available here,
    4 storage/registry/build, 5 backend, 6 ComfyUI, 7 queue, 8 privacy.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Ctx(config_path=config_path, data_dir_opt=data_dir, verbose=verbose)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    from nomad.cli.errors import run_cli

    return run_cli(cli, argv)
