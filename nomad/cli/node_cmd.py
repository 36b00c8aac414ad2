"""`nomad node`: the GPU node's side of a wake (weights fetch, cache). Needs no nomad.yaml."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import emit_json

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | None) -> int | None:
    """``200G``, ``512M``, ``1.5T`` or bytes → bytes; empty/None/"0" → no limit."""
    if not text or text.strip() in ("0", "none", "unlimited"):
        return None
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not m:
        from nomad.errors import UsageError

        raise UsageError(f"bad size {text!r}", hint="use e.g. 200G, 512M or a byte count")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _cache(ctx: Ctx, cache_dir: str | None, limit: str | None) -> Any:
    from nomad.node import NodeCache

    root = Path(cache_dir) if cache_dir else ctx.data_dir / "node-cache"
    return NodeCache(root, parse_size(limit))


@click.group("node")
def node() -> None:
    """The GPU node's side of a wake: fetch weights into a digest-keyed cache.

    Runs on the node (SkyPilot run script, ssh box, local host); needs no
    nomad.yaml. Registry login from NOMAD_REGISTRY_USERNAME/PASSWORD, S3
    read-only keys from NOMAD_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY.
    """


_cache_opts = [
    click.option("--cache-dir", envvar="NOMAD_NODE_CACHE", default=None,
                 help="Weight cache folder (default: DATA_DIR/node-cache; env NOMAD_NODE_CACHE)."),
    click.option("--cache-limit", envvar="NOMAD_NODE_CACHE_LIMIT", default=None,
                 help="Cache size limit, e.g. 200G; LRU entries go first (env NOMAD_NODE_CACHE_LIMIT)."),
]  # fmt: skip


def cache_options(f: Any) -> Any:
    for opt in reversed(_cache_opts):
        f = opt(f)
    return f


@node.command("pull")
@click.argument("ref")
@cache_options
@click.option(
    "--from",
    "via",
    type=click.Choice(["registry", "s3"]),
    default="registry",
    show_default=True,
    help="registry: blob GETs (following its S3 redirect when enabled); "
    "s3: straight from the registry's bucket with read-only keys.",
)
@click.option(
    "--s3-endpoint", envvar="NOMAD_S3_ENDPOINT", default=None, help="S3 endpoint (--from s3)."
)
@click.option("--s3-region", envvar="NOMAD_S3_REGION", default="us-east-1", show_default=True)
@click.option(
    "--s3-bucket",
    envvar="NOMAD_NODE_S3_BUCKET",
    default="registry",
    show_default=True,
    help="The registry's bucket (--from s3).",
)
@click.option("--insecure", is_flag=True, help="Plain HTTP to a non-loopback registry.")
@click.option(
    "--parallel",
    type=click.IntRange(1, 32),
    default=3,
    show_default=True,
    help="Weight layers fetched at once.",
)
@click.option(
    "--streams",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="HTTP range streams per layer.",
)
@click.option(
    "--chunk-mib",
    type=click.IntRange(1, 4096),
    default=32,
    show_default=True,
    help="Range size (also the resume granularity).",
)
@click.option(
    "--mounts-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write `docker run` volume args here, one per line (-v, SRC:DST:ro, …).",
)
@click.option(
    "--link-into",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Symlink the weights into this models folder (ComfyUI as a host process).",
)
@click.option(
    "--events",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Append structured events (JSON lines): per layer, and the weights_fetch phase.",
)
@click.option("--wake", default=None, help="Wake id for the events (default: a new one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def pull(ctx: Ctx, ref: str, cache_dir: str | None, cache_limit: str | None, via: str,
         s3_endpoint: str | None, s3_region: str, s3_bucket: str, insecure: bool, parallel: int,
         streams: int, chunk_mib: int, mounts_out: Path | None, link_into: Path | None,
         events: Path | None, wake: str | None, as_json: bool) -> None:  # fmt: skip
    """Fetch REF's weight layers into the node cache and print how to mount them.

    REF is REGISTRY/REPO[:TAG|@DIGEST]. Cached weights move 0 bytes; an
    interrupted pull resumes where it stopped; a corrupt blob is an error
    naming it (exit 4) and nothing of it is kept.
    """
    import uuid

    from nomad.images._progress import byte_progress
    from nomad.node import PhaseRecorder, RegistrySource, pull_weights
    from nomad.node.phases import jsonl
    from nomad.registry import RegistryClient, base_url_for, parse_reference

    r = parse_reference(ref)
    cache = _cache(ctx, cache_dir, cache_limit)
    emit = jsonl(events) if events else (lambda _e: None)
    rec = PhaseRecorder(wake or uuid.uuid4().hex[:12], emit)
    with RegistryClient(
        base_url_for(r.host, insecure),
        username=os.environ.get("NOMAD_REGISTRY_USERNAME") or None,
        password=os.environ.get("NOMAD_REGISTRY_PASSWORD") or None,
    ) as client:
        source = (
            RegistrySource(client, r.repository)
            if via == "registry"
            else _s3_source(s3_endpoint, s3_region, s3_bucket)
        )
        with (
            rec.phase("weights_fetch", ref=ref) as extra,
            byte_progress("weights", enabled=not as_json) as tick,
        ):
            result = pull_weights(client, r, cache, source=source, parallel=parallel,
                                  streams=streams, chunk=chunk_mib << 20, tick=tick, emit=emit)  # fmt: skip
            extra.update(bytes_moved=result.bytes_moved, weight_bytes=result.weight_bytes)
    if mounts_out:
        mounts_out.parent.mkdir(parents=True, exist_ok=True)
        mounts_out.write_text("".join(a + "\n" for a in result.mounts.docker_args()))
    if link_into:
        result.mounts.link_tree(link_into)
    if as_json:
        emit_json(result.to_json())
        return
    for lr in result.layers:
        click.echo(f"{lr.outcome:8} {lr.size / 1e6:10.1f} MB  {lr.dest}")
    rate = result.bytes_moved / result.seconds / 1e6 if result.seconds else 0.0
    click.echo(
        f"weights: {len(result.layers)} layers, {result.weight_bytes / 1e6:.1f} MB; moved "
        f"{result.bytes_moved / 1e6:.1f} MB in {result.seconds:.1f} s ({rate:.0f} MB/s)"
    )


def _s3_source(endpoint: str | None, region: str, bucket: str) -> Any:
    from nomad.errors import UsageError
    from nomad.node import S3Source
    from nomad.storage import S3Settings, Storage

    key, secret = (
        os.environ.get("NOMAD_S3_ACCESS_KEY_ID"),
        os.environ.get("NOMAD_S3_SECRET_ACCESS_KEY"),
    )
    if not (key and secret):
        raise UsageError(
            "--from s3 needs read-only keys for the registry's bucket",
            hint="set NOMAD_S3_ACCESS_KEY_ID and NOMAD_S3_SECRET_ACCESS_KEY (and --s3-endpoint)",
        )
    settings = S3Settings(endpoint, region, bucket, bucket, key, secret)
    return S3Source(Storage(settings, bucket))


@node.command("slim")
@click.argument("ref")
@click.option("--insecure", is_flag=True, help="Plain HTTP to a non-loopback registry.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def slim(ref: str, insecure: bool, as_json: bool) -> None:
    """Publish REF's slim twin (same image minus weight layers) and print its reference.

    The container engine pulls the slim image in fetched mode; no layer bytes
    move (they are in the repository already): one small config, one manifest.
    Needs push rights (NOMAD_REGISTRY_USERNAME/PASSWORD).
    """
    from nomad.node import publish_slim
    from nomad.registry import RegistryClient, base_url_for, parse_reference

    r = parse_reference(ref)
    with RegistryClient(
        base_url_for(r.host, insecure),
        username=os.environ.get("NOMAD_REGISTRY_USERNAME") or None,
        password=os.environ.get("NOMAD_REGISTRY_PASSWORD") or None,
    ) as client:
        out = publish_slim(client, r)
    if as_json:
        emit_json({"ref": ref, "slim": out})
        return
    click.echo(out)


@node.command("cache")
@cache_options
@click.option("--json", "as_json", is_flag=True, help="Print entries as JSON.")
@click.pass_obj
def cache_cmd(ctx: Ctx, cache_dir: str | None, cache_limit: str | None, as_json: bool) -> None:
    """List the node's cached weights, least recently used first."""
    cache = _cache(ctx, cache_dir, cache_limit)
    entries = cache.entries()
    if as_json:
        emit_json(
            {
                "root": str(cache.root),
                "used_bytes": cache.used_bytes(),
                "limit_bytes": cache.max_bytes,
                "entries": [e.__dict__ for e in entries],
            }
        )
        return
    for e in entries:
        click.echo(f"{e.digest[:19]}  {e.size / 1e6:10.1f} MB  {e.path}")
    click.echo(f"{len(entries)} weights, {cache.used_bytes() / 1e6:.1f} MB in {cache.root}")
