"""``nomad init [DIR]``: write the example nomad.yaml (logic in nomad.dev.init)."""

from __future__ import annotations

import click

from nomad.cli.output import console


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False), default=".")
@click.option("--force", is_flag=True, help="Overwrite an existing nomad.yaml.")
@click.option(
    "--base",
    default=None,
    help="Runtime base image (ComfyUI + CUDA). Default: a known public one; see `nomad base profiles`.",
)
def init(directory: str, force: bool, base: str | None) -> None:
    """Write an example nomad.yaml (Flux schnell + Qwen image edit 2509) into DIRECTORY."""
    from nomad.dev.init import write_example

    path, choice = write_example(directory, force=force, base=base)
    con = console()
    con.print(f"[green]✓[/] wrote {path}")
    if choice.profile:
        con.print(
            f"  base: {choice.image} (profile {choice.profile}: ComfyUI in "
            f"{choice.models_root.rsplit('/', 1)[0]}, models in {choice.models_root})"
        )
    else:
        con.print(
            f"  base: {choice.image} (no known profile: ComfyUI expected in "
            f"{choice.models_root.rsplit('/', 1)[0]}; set image.models_root if it lives elsewhere)"
        )
    con.print(
        "  your own base instead: `nomad base build --tag REGISTRY/comfyui-runtime:TAG --push`"
    )
    con.print("  next: `nomad doctor`, then `nomad build` and `nomad push` (docs/going-real.md)")
