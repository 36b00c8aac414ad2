"""`nomad build`: base + one deterministic layer per model file + a small files layer."""

from __future__ import annotations

from pathlib import Path

import click

from nomad.cli.context import Ctx
from nomad.cli.output import emit_json


@click.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="OCI layout dir (default: DATA_DIR/images/PROJECT).",
)
@click.option("--tag", default=None, help="Tag inside the layout (default: image.tag).")
@click.option(
    "--dockerfile",
    "dockerfile_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write the equivalent multi-stage Dockerfile + context here.",
)
@click.option(
    "--builder",
    type=click.Choice(["nomad", "docker"]),
    default="nomad",
    help="nomad writes the OCI layout itself; docker runs the exported Dockerfile.",
)
@click.option("--parallel", type=click.IntRange(1, 32), default=4, help="Parallel downloads.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model cache (default: $NOMAD_CACHE_DIR or ~/.cache/nomad).",
)
@click.option(
    "--drop",
    multiple=True,
    metavar="DEST",
    help="Remove a weight listed in nomad.lock (its layer and the order after it change).",
)
@click.option(
    "--relock", is_flag=True, help="Forget nomad.lock's layer order and sort layers by path."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def build(
    ctx: Ctx,
    out: Path | None,
    tag: str | None,
    dockerfile_dir: Path | None,
    builder: str,
    parallel: int,
    cache_dir: Path | None,
    drop: tuple[str, ...],
    relock: bool,
    as_json: bool,
) -> None:
    """Build the image into a local OCI layout (no Docker daemon needed)."""
    from nomad import images
    from nomad.images._progress import byte_progress
    from nomad.images._service import build_from_config

    cfg = ctx.config
    if builder == "docker":
        images.require_buildx()
    with byte_progress("build", enabled=not as_json) as tick:
        result, export = build_from_config(
            cfg,
            config_dir=ctx.config_dir,
            data_dir=ctx.data_dir,
            out=out or images.default_layout(ctx.data_dir, cfg.project),
            tag=tag,
            cache_dir=cache_dir,
            parallel=parallel,
            progress=tick,
            dockerfile_dir=dockerfile_dir
            or (ctx.data_dir / "dockerfile" if builder == "docker" else None),
            drop=drop,
            relock=relock,
        )
    if export is not None and builder == "docker":
        images.run_buildx(export)
    if as_json:
        doc = result.to_json()
        doc["dockerfile"] = str(export.dockerfile) if export else None
        emit_json(doc)
        return
    click.echo(f"built {result.layout}:{result.tag}  {result.manifest_digest}")
    click.echo(f"  {len(result.layers)} layers, {result.size_bytes / 1e6:.1f} MB")
    if export is not None:
        click.echo(f"  Dockerfile: {export.dockerfile}  (build: {' '.join(export.command)})")
