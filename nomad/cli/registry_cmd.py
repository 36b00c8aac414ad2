"""`nomad registry`: the distribution config for an S3 bucket, bucket creation, access checks."""

from __future__ import annotations

from pathlib import Path

import click

from nomad.cli.context import Ctx
from nomad.cli.output import emit_json


@click.group("registry")
def registry() -> None:
    """Registry helpers: S3 storage config, bucket, access."""


@registry.command("config")
@click.option(
    "--provider",
    type=click.Choice(["aws", "tigris", "r2", "minio", "seaweedfs"]),
    default=None,
    help="Endpoint/region presets (default: storage.* from nomad.yaml).",
)
@click.option("--bucket", default=None, help="Bucket (default: storage.registry_bucket).")
@click.option("--endpoint", default=None, help="S3 endpoint URL (overrides the preset).")
@click.option("--region", default=None)
@click.option("--listen", default="127.0.0.1:5000", show_default=True)
@click.option(
    "--redirect/--no-redirect",
    default=None,
    help="Blob GETs answered with a 307 to presigned S3 URLs, so pulls read straight from S3 "
    "(default: on for an https endpoint, off for plain http).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the config WITH keys to this file (mode 0600). Stdout never shows keys.",
)
@click.pass_obj
def config(
    ctx: Ctx,
    provider: str | None,
    bucket: str | None,
    endpoint: str | None,
    region: str | None,
    listen: str,
    redirect: bool | None,
    out: Path | None,
) -> None:
    """Print (or write) a distribution registry config backed by an S3 bucket."""
    from nomad.registry._config import (
        distribution_config,
        distribution_yaml,
        provider_defaults,
        write_private,
    )

    st = ctx.config.storage
    preset = provider_defaults(provider) if provider else {"endpoint": None, "region": None}
    keys = (st.access_key_id, st.secret_access_key) if out else (None, None)
    cfg = distribution_config(
        bucket=bucket or st.registry_bucket,
        endpoint=endpoint or preset["endpoint"] or st.endpoint_url,
        region=region or preset["region"] or st.region,
        listen=listen,
        access_key=keys[0].get_secret_value() if keys[0] else None,
        secret_key=keys[1].get_secret_value() if keys[1] else None,
        redirect=redirect,
    )
    if out:
        write_private(out, distribution_yaml(cfg))
        click.echo(f"wrote {out} (mode 0600); run: registry serve {out}")
        return
    click.echo(distribution_yaml(cfg), nl=False)
    click.echo(
        "# keys: export REGISTRY_STORAGE_S3_ACCESSKEY / REGISTRY_STORAGE_S3_SECRETKEY", err=True
    )


@registry.command("check")
@click.option("--create-bucket", is_flag=True, help="Create the registry bucket if it is missing.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def check(ctx: Ctx, create_bucket: bool, as_json: bool) -> None:
    """Check the registry answers /v2/ and (when keys are known) its S3 bucket is reachable."""
    from nomad.registry._checks import check_registry

    report = check_registry(ctx.config, ctx.data_dir, create_bucket=create_bucket)
    if as_json:
        emit_json(report)
        return
    for name, status in report.items():
        click.echo(f"{name:10} {status}")


@registry.command("purge-uploads")
@click.option(
    "--older-than",
    "hours",
    type=click.FloatRange(0),
    default=168.0,
    show_default=True,
    help="Remove uploads started more than this many hours ago.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def purge_uploads_cmd(ctx: Ctx, hours: float, dry_run: bool, as_json: bool) -> None:
    """Remove abandoned blob uploads from the registry's bucket (needs its keys).

    Replaces distribution's own upload purger, which crashes the registry on the
    keys an interrupted upload leaves in some S3 stores (it is off in nomad's configs).
    """
    from nomad.dev.defaults import resolve_registry
    from nomad.errors import UsageError
    from nomad.registry._purge import purge_uploads
    from nomad.storage import Storage

    reg = resolve_registry(ctx.config, ctx.data_dir)
    if reg.s3 is None:
        raise UsageError(
            "purge-uploads needs the registry bucket's keys",
            hint="set storage.* in nomad.yaml (or use the embedded stack)",
        )
    store = Storage(reg.s3, reg.s3.registry_bucket)
    report = purge_uploads(store, older_than=hours * 3600, dry_run=dry_run)
    if as_json:
        emit_json(report.to_json())
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(report.removed)} upload(s), kept {report.kept} recent one(s)")
    for d in report.removed:
        click.echo(f"  {d}")


@registry.command("verify")
@click.argument("ref", required=False)
@click.option("--repair", is_flag=True, help="Rewrite corrupt blobs from the local OCI layout.")
@click.option(
    "--image",
    "layout",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="OCI layout to repair from (default: what `nomad build` wrote).",
)
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def verify(
    ctx: Ctx, ref: str | None, repair: bool, layout: Path | None, parallel: int, as_json: bool
) -> None:
    """Download and sha256 every blob of an image (default: the last push). Exit 4 if any is bad.

    REF is [REGISTRY/]REPO[:TAG|@DIGEST]. The registry's HEAD answers from metadata, so
    only reading the bytes back proves a stored layer is intact.
    """
    from nomad import images
    from nomad.dev.defaults import resolve_registry
    from nomad.images._progress import byte_progress
    from nomad.registry._service import direct_s3_for, require_ok, verify_pushed
    from nomad.registry._verify_target import verify_target

    cfg = ctx.config
    reg = resolve_registry(cfg, ctx.data_dir)
    url, repo, reference = verify_target(ref, reg.url, reg.repository, cfg.image.tag, ctx.data_dir)
    with byte_progress("verify", enabled=not as_json) as tick:
        report = verify_pushed(
            url=url,
            repository=repo,
            reference=reference,
            username=reg.username,
            password=reg.password,
            insecure=reg.insecure,
            parallel=parallel,
            proxy=reg.proxy_to(url, cfg),
            progress=lambda d, n, s: tick(d[7:19], n, s),
            repair_from=(layout or images.default_layout(ctx.data_dir, cfg.project))
            if repair
            else None,
            s3=direct_s3_for(None, url, reg.url, reg.s3),
        )
    if as_json:
        emit_json(report.to_json())
    else:
        for b in report.blobs:
            mark = "repaired" if b.repaired else b.status
            click.echo(f"{mark:9} {b.digest}  {b.size / 1e6:10.1f} MB  {b.detail}".rstrip())
        click.echo(f"read back {report.bytes_read / 1e6:.1f} MB of {repo}@{report.digest}")
    require_ok(report)
