"""``nomad base build | profiles``: the ComfyUI runtime base (logic in nomad.runtime_base, nomad.images._profiles)."""

from __future__ import annotations

import shlex

import click

from nomad.cli.output import console, emit_json


@click.group("base")
def base() -> None:
    """The runtime base image: a known public ComfyUI CUDA image, or nomad's own from images/comfyui."""


@base.command("profiles")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def profiles(as_json: bool) -> None:
    """Known ComfyUI runtime bases: where ComfyUI lives, its Python, how it starts, where models go."""
    from nomad.images._profiles import PROFILES

    rows = [
        {
            "name": p.name,
            "image": p.image,
            "comfyui_dir": p.comfyui_dir,
            "python": p.python,
            "models_root": p.models_root,
            "start": p.start_command(),
            "source": p.source,
        }
        for p in PROFILES
    ]
    if as_json:
        emit_json(rows)
        return
    con = console()
    for r in rows:
        con.print(f"[bold]{r['name']}[/]  {r['image']}", soft_wrap=True)
        con.print(f"  ComfyUI {r['comfyui_dir']} · models {r['models_root']} · start: {r['start']}")
        con.print(f"  from {r['source']}", soft_wrap=True)
    con.print("use one: nomad init --base IMAGE (writes image.base and image.models_root)")


@base.command("build")
@click.option(
    "--tag", required=True, help="Image name, e.g. registry.example.com/comfyui-runtime:v0.3.75."
)
@click.option(
    "--push", is_flag=True, help="Push to the registry named in --tag (docker login first)."
)
@click.option("--oci-archive", default=None, help="Write an OCI archive here instead of pushing.")
@click.option("--platform", default="linux/amd64", show_default=True)
@click.option(
    "--comfyui-version", default=None, help="ComfyUI git tag (build arg COMFYUI_VERSION)."
)
@click.option("--print", "print_only", is_flag=True, help="Print the buildx command; run nothing.")
def build(
    tag: str,
    push: bool,
    oci_archive: str | None,
    platform: str,
    comfyui_version: str | None,
    print_only: bool,
) -> None:
    """Build nomad's ComfyUI runtime base (images/comfyui, shipped with nomad) with docker buildx."""
    from nomad.runtime_base import BaseBuild, buildx_command, run_base_build

    spec = BaseBuild(tag, push, oci_archive, platform, comfyui_version)
    if print_only:
        click.echo(shlex.join(buildx_command(spec)))
        return
    ref = run_base_build(spec)
    console().print(f"[green]✓[/] built; set in nomad.yaml:  image.base: {ref}")
    console().print(
        "  (profile nomad-runtime: ComfyUI in /opt/ComfyUI, models_root /opt/ComfyUI/models)"
    )
