"""`nomad push`: HEAD, else mount, else upload each blob; manifest last; print the digest ref."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import emit_json


@click.command("push")
@click.argument("ref", required=False)
@click.option(
    "--image",
    "layout",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="OCI layout to push (default: what `nomad build` wrote).",
)
@click.option("--tag", default=None, help="Tag to push (default: image.tag).")
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=None,
    help="Blobs in flight (default: registry.parallel_blobs).",
)
@click.option(
    "--direct-s3/--api",
    "direct",
    default=None,
    help="Write blobs straight into the registry's S3 bucket (default: on when nomad holds "
    "its keys: the embedded stack, or registry.direct_s3 with storage keys).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Afterwards read back and sha256 every blob of the image (also those found "
    "'existing' or mounted) and repair corrupt ones from the local layout.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def push(
    ctx: Ctx,
    ref: str | None,
    layout: Path | None,
    tag: str | None,
    parallel: int | None,
    direct: bool | None,
    verify: bool,
    as_json: bool,
) -> None:
    """Push the built image. REF is [REGISTRY/]REPO[:TAG]; default: the configured registry."""
    from nomad import images
    from nomad.config import find_config
    from nomad.dev.defaults import resolve_registry
    from nomad.images._progress import byte_progress
    from nomad.images._service import locked_repos, remember_repo
    from nomad.registry import push_image, target_for
    from nomad.registry._service import direct_s3_for

    cfg = ctx.config
    reg = resolve_registry(cfg, ctx.data_dir)
    url, repo, out_tag = target_for(ref, reg.url, reg.repository, tag or cfg.image.tag)
    # default: straight into S3 whenever nomad holds the target registry's bucket keys
    # (the embedded stack, or registry.direct_s3 with storage keys): ~1.7x the API path
    s3 = direct_s3_for(direct, url, reg.url, reg.s3)
    src = layout or images.default_layout(ctx.data_dir, cfg.project)
    with byte_progress("push", enabled=not as_json) as tick:
        result = push_image(
            url=url,
            repository=repo,
            tag=out_tag,
            layout_dir=src,
            data_dir=ctx.data_dir,
            username=reg.username,
            password=reg.password,
            insecure=reg.insecure,
            parallel=parallel or cfg.registry.parallel_blobs,
            source_tag=tag or cfg.image.tag,
            direct_s3=s3,
            mount_from=locked_repos(ctx.config_dir),
            progress=lambda d, n, s: tick(d[7:19], n, s),
            project=cfg.project,  # `nomad up` launches this project's own last push
            config_path=find_config(ctx.config_path),
            proxy=reg.proxy_to(url, cfg),
        )
    remember_repo(ctx.config_dir, repo)
    doc = result.to_json()
    if verify:
        report = _verify(reg, url, repo, result.digest, src, as_json, reg.proxy_to(url, cfg))
        doc["verify"] = report.to_json()
    if as_json:
        emit_json(doc)
        return
    counts = ", ".join(f"{result.count(a)} {a}" for a in ("uploaded", "mounted", "exists"))
    click.echo(
        f"blobs: {counts}; sent {result.bytes_sent / 1e6:.1f} MB "
        f"of {result.size_bytes / 1e6:.1f} MB via {result.path_text()}"
    )
    click.echo(result.ref)


def _verify(
    reg: Any, url: str, repo: str, digest: str, src: Path, quiet: bool, proxy: str | None
) -> Any:
    """push --verify: read everything back, repair from ``src``, fail (exit 4) if still bad."""
    from nomad.images._progress import byte_progress
    from nomad.registry._service import direct_s3_for, require_ok, verify_pushed

    with byte_progress("verify", enabled=not quiet) as tick:
        report = verify_pushed(
            url=url, repository=repo, reference=digest, username=reg.username,
            password=reg.password, insecure=reg.insecure, repair_from=src,
            s3=direct_s3_for(None, url, reg.url, reg.s3), proxy=proxy,
            progress=lambda d, n, s: tick(d[7:19], n, s),
        )  # fmt: skip
    require_ok(report)
    if not quiet:
        fixed = sum(1 for b in report.blobs if b.repaired)
        click.echo(
            f"verified: {len(report.blobs)} blobs read back and hashed"
            + (f", {fixed} repaired from {src}" if fixed else "")
        )
    return report
