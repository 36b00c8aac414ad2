"""``nomad plan | up | down | status``: parse, call :mod:`nomad.launch`, render."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json
from nomad.errors import UsageError

if TYPE_CHECKING:
    from nomad.backends.base import Backend, LaunchSpec, Offer
    from nomad.launch import ClusterReport

pass_ctx = click.make_pass_decorator(Ctx)


def _backend(ctx: Ctx, name: str | None, catalog: str | None = None) -> Backend:
    from nomad import backends

    cfg = ctx.config
    if not catalog and cfg.infra.catalog_dir:  # relative to nomad.yaml, like every path in it
        catalog = str(ctx.config_dir / Path(cfg.infra.catalog_dir).expanduser())
    if catalog:
        cfg = cfg.model_copy(
            update={"infra": cfg.infra.model_copy(update={"catalog_dir": catalog})}
        )
    return backends.get_backend(name, cfg, ctx.data_dir)


def _spec(ctx: Ctx, need_image: bool, image: str | None = None, **overrides: Any) -> LaunchSpec:
    from nomad.config import find_config
    from nomad.launch import spec_from_config

    spec = spec_from_config(
        ctx.config, ctx.data_dir, need_image=need_image, image_ref=image,
        config_path=find_config(ctx.config_path),  # the last push of this project and config
    )  # fmt: skip
    return replace(spec, **{k: v for k, v in overrides.items() if v not in (None, ())})


@click.command("plan")
@click.option(
    "--catalog",
    type=click.Path(file_okay=False),
    help="Pinned SkyPilot catalog snapshot (offline).",
)
@click.option(
    "--backend",
    "backend_name",
    default=None,
    help="skypilot | local | ssh | fleet (default: infra.backend).",
)
@click.option("--gpus", default=None, help="Comma-separated candidates, overriding infra.gpus.")
@click.option("--gpu-count", type=int, default=None, help="GPUs per node.")
@click.option("--max-price", type=float, default=None, help="Max $/hour.")
@click.option("--min-vram", type=float, default=None, help="Min VRAM per GPU (GB).")
@click.option("--region", "regions", multiple=True, help="Allowed region (repeatable).")
@click.option("--spot/--on-demand", default=None, help="Spot (preemptible) or on-demand prices.")
@click.option("--ordered", is_flag=True, default=None, help="Treat --gpus as a preference order.")
@click.option(
    "--bench",
    "bench_paths",
    multiple=True,
    help="Benchmark results file (or @reference): adds $/image per workflow.",
)
@click.option(
    "--rank-by",
    "rank_workflow",
    default=None,
    metavar="WORKFLOW",
    help="Rank by $/image of this workflow (needs --bench).",
)
@click.option("--limit", type=int, default=20, show_default=True, help="Rows to show.")
@click.option("--json", "as_json", is_flag=True, help="Stable JSON for scripts.")
@pass_ctx
def plan(
    ctx: Ctx,
    catalog: str | None,
    backend_name: str | None,
    gpus: str | None,
    gpu_count: int | None,
    max_price: float | None,
    min_vram: float | None,
    regions: tuple[str, ...],
    spot: bool | None,
    ordered: bool | None,
    bench_paths: tuple[str, ...],
    rank_workflow: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Rank GPU offers by $/hour (and $/image with --bench)."""
    from nomad import launch

    backend = _backend(ctx, backend_name, catalog)
    spec = _spec(
        ctx,
        False,
        gpus=tuple(g.strip() for g in gpus.split(",")) if gpus else None,
        gpu_count=gpu_count,
        max_price_per_hour=max_price,
        min_vram_gb=min_vram,
        regions=regions,
        spot=spot,
        ordered=ordered,
    )
    if rank_workflow and not bench_paths:
        raise UsageError(
            "--rank-by needs benchmark results", hint="add --bench FILE or --bench @reference"
        )
    offers = launch.plan(backend, spec, bench_paths=list(bench_paths), rank_workflow=rank_workflow)
    choice = getattr(getattr(backend, "last_plan", None), "optimizer_choice", None)
    if as_json:
        emit_json(
            {
                "backend": backend.name,
                "ordered": spec.ordered,
                "offers": [o.to_json() for o in offers],
                "optimizer_choice": choice.to_json() if choice else None,
                "skipped": list(getattr(backend, "skipped", [])),  # fleet members that could not plan
            }
        )
        return
    _offers_table(offers[:limit], title=f"{len(offers)} offer(s) via {backend.name}")
    for why in getattr(backend, "skipped", []):
        click.echo(f"skipped fleet member {why}", err=True)


@click.command("up")
@click.option(
    "--backend",
    "backend_name",
    default=None,
    help="skypilot | local | ssh | fleet (default: infra.backend).",
)
@click.option(
    "--catalog", type=click.Path(file_okay=False), help="Pinned SkyPilot catalog snapshot."
)
@click.option(
    "--image", default=None, help="REGISTRY/REPO@sha256:… (default: the last `nomad push`)."
)
@click.option(
    "--attempts", type=int, default=3, show_default=True, help="Offers to try before giving up."
)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for /system_stats (default: infra.health_timeout_seconds, 900).",
)
@click.option("--dry-run", is_flag=True, help="Print the SkyPilot task (secrets masked) and exit.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def up(
    ctx: Ctx,
    backend_name: str | None,
    catalog: str | None,
    image: str | None,
    attempts: int,
    timeout: float | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Launch the image on the cheapest GPU that fits; wait until ComfyUI answers."""
    from nomad import launch
    from nomad.config import find_config

    if find_config(ctx.config_path) is None:  # defaults must never decide what a GPU runs
        raise UsageError(
            f"no nomad.yaml in {Path.cwd()} (nor -c/--config or $NOMAD_CONFIG): "
            "refusing to launch on built-in defaults",
            hint="run it in your project's folder, pass -c PATH/nomad.yaml, or write one with `nomad init`",
        )
    local = (backend_name or ctx.config.infra.backend) == "local"  # command mode needs no image
    spec = _spec(ctx, not local, image)
    from nomad.preflight import check_node_can_pull  # before anything launches, dry runs too

    check_node_can_pull(
        spec.image_ref, backend_name or ctx.config.infra.backend, ctx.config.registry.url
    )
    if dry_run:
        import yaml

        from nomad.backends.skypilot.task import build_task_config, redacted, to_sky_task
        from nomad.watchdog import node_window_minutes

        margin = ctx.config.infra.node_idle_margin_minutes  # the node waits longer than serve
        config = build_task_config(
            replace(spec, idle_minutes=node_window_minutes(spec.idle_minutes, margin))
        )
        if (backend_name or ctx.config.infra.backend) == "skypilot":
            to_sky_task(config)  # SkyPilot's own validation, secrets and autostop included
        choice = _dry_placement(ctx, backend_name, catalog, spec)
        if as_json:
            emit_json({"task": redacted(config), "placement": choice})
            return
        click.echo(yaml.safe_dump(redacted(config), sort_keys=False))
        if choice is not None:
            _show_placement(choice)
        return
    backend = _backend(ctx, backend_name, catalog)
    from nomad.queue.ledger import open_ledger

    timeout = timeout or ctx.config.infra.health_timeout_seconds

    def guard() -> None:
        launch.check_daily_budget(ctx.config, ctx.data_dir)

    book = open_ledger(ctx.config, ctx.data_dir)
    health = launch.health_client(ctx.config)  # through the proxy when privacy is on
    try:
        if as_json:
            report = launch.up(
                backend, spec, ctx.data_dir, max_attempts=attempts, health_timeout_s=timeout,
                guard=guard, ledger=book, health_client=health,
            )  # fmt: skip
        else:
            con = console()
            with con.status("provisioning and waiting for ComfyUI to answer…", spinner="dots"):
                report = launch.up(
                    backend, spec, ctx.data_dir, max_attempts=attempts, health_timeout_s=timeout,
                    events=con.log, guard=guard, ledger=book, health_client=health,
                )  # fmt: skip
    finally:
        book.close()
        if health is not None:
            health.close()
    if as_json:
        emit_json(report.to_json())
        return
    _show(report)
    click.echo(f"tear down with: nomad down {report.info.name}")


def _dry_placement(
    ctx: Ctx, backend_name: str | None, catalog: str | None, spec: LaunchSpec
) -> dict[str, Any] | None:
    """Which offer `up` would launch on, and why — only where planning needs no cloud account."""
    name = backend_name or ctx.config.infra.backend
    if name in ("skypilot", "fleet") and not (catalog or ctx.config.infra.catalog_dir):
        return None  # a live plan needs credentials; `nomad plan` says more
    from nomad import launch

    offers, why = launch.ranked_offers(_backend(ctx, backend_name, catalog), spec)
    return {"why": why, "offers": [o.to_json() for o in offers]}


def _show_placement(choice: dict[str, Any]) -> None:
    click.echo(f"# would launch on the first offer: {choice['why']}")
    for o in choice["offers"][:5]:
        per = ", ".join(f"{k} ${v:.6f}" for k, v in sorted(o["price_per_image"].items())) or "-"
        click.echo(f"#   {o['cloud']} {o['gpu']}×{o['gpu_count']} ${o['price_per_hour']:.2f}/h  $/image: {per}")


@click.command("down")
@click.argument("name", required=False)
@click.option(
    "--force",
    is_flag=True,
    help="Ask the backend to tear NAME down even when the ledger holds nothing for it.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def down(ctx: Ctx, name: str | None, force: bool, as_json: bool) -> None:
    """Tear down NAME, or every cluster the ledger holds for this project; report time and spend.

    With nothing recorded it returns at once and starts nothing (no backend,
    no SkyPilot API server), unless --force names a cluster to ask about.
    """
    from nomad import launch
    from nomad.queue.ledger import has_database, open_ledger

    if force and not name:
        raise UsageError("--force needs a cluster NAME", hint="e.g. nomad down nomad-demo --force")
    reports = []
    if has_database(ctx.config, ctx.data_dir):
        book = open_ledger(ctx.config, ctx.data_dir)
        try:
            rows = [r for r in book.open_rows() if name is None or r.name == name]
            reports = [
                launch.down(_backend(ctx, r.backend), ctx.data_dir, r.name, ledger=book)
                for r in rows
            ]
        finally:
            book.close()
    done = {r.info.name for r in reports}
    for rec in launch.legacy_records(ctx.data_dir, done):  # launched before the ledger existed
        if name is None or rec.name == name:
            reports.append(launch.down(_backend(ctx, rec.backend), ctx.data_dir, rec.name))
    if force and not reports:
        reports = [launch.down(_backend(ctx, None), ctx.data_dir, name or "")]
    if as_json:
        emit_json({"clusters": [r.to_json() for r in reports]})
        return
    if not reports:
        what = name or f"project {ctx.config.project!r}"
        click.echo(f"{what}: nothing to tear down (the ledger holds no open cluster)")
    for r in reports:
        if r.uptime_s is None:
            click.echo(f"{r.info.name}: down (the ledger had no record of it)")
        else:
            click.echo(
                f"{r.info.name}: down after {_dur(r.uptime_s)}, spent ${r.spend_usd or 0:.2f}"
            )


@click.command("status")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def status(ctx: Ctx, name: str | None, as_json: bool) -> None:
    """Every cluster the ledger holds (whoever launched it): state, spend; and today's total."""
    from nomad import launch
    from nomad.backends import state
    from nomad.queue.ledger import has_database

    if (
        not has_database(ctx.config, ctx.data_dir)
        and name is None
        and not state.load_all(ctx.data_dir)
    ):
        reports, spent = [], 0.0  # nothing was ever launched from here: do not create a database
    else:
        reports = launch.status(lambda b: _backend(ctx, b), ctx.data_dir, name, config=ctx.config)
        spent = launch.spend_today(ctx.config, ctx.data_dir)
    budget = ctx.config.infra.daily_budget
    if as_json:
        emit_json(
            {
                "clusters": [r.to_json() for r in reports],
                "spend_today": round(spent, 4),
                "daily_budget": budget,
            }
        )
        return
    if not reports:
        click.echo("no clusters (start one with `nomad up`, or let `nomad serve` wake one)")
    for r in reports:
        _show(r)
    of = f" of ${budget:.2f} daily budget" if budget is not None else ""
    click.echo(f"spent today: ${spent:.2f}{of} (every cluster in the ledger, since 00:00 UTC)")


def _show(r: ClusterReport) -> None:
    i = r.info
    price = f"${i.price_per_hour:.2f}/h"
    up_for = (
        f", up {_dur(r.uptime_s)}, spent ${r.spend_usd or 0:.2f}" if r.uptime_s is not None else ""
    )
    who = i.extra.get("requested_by")
    by = f" (by {who})" if who else ""
    click.echo(f"{i.name} [{i.backend}] {i.state.value.upper()} {price}{up_for}{by}")
    if i.offer:
        where = "/".join(p for p in (i.offer.cloud, i.offer.region) if p)
        click.echo(
            f"  {i.offer.gpu_count}x {i.offer.gpu} on {where} ({i.offer.instance_type or '-'})"
        )
    for e in i.endpoints:
        click.echo(f"  gpu {e.gpu_index}: {e.url}")
    if i.detail:
        click.echo(f"  {i.detail}")
    if r.queue:
        click.echo("  queue: " + ", ".join(f"{k}={v}" for k, v in sorted(r.queue.items())))


def _offers_table(offers: list[Offer], title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("#", "cloud", "region", "instance", "GPU", "n", "$/h", "spot", "VRAM", "$/image"):
        table.add_column(col)
    for n, o in enumerate(offers, 1):
        per = ", ".join(f"{k} ${v:.4f}" for k, v in sorted(o.price_per_image.items())) or "-"
        table.add_row(
            str(n),
            o.cloud,
            o.region or "-",
            o.instance_type or "-",
            o.gpu,
            str(o.gpu_count),
            f"{o.price_per_hour:.4f}",
            "yes" if o.spot else "no",
            f"{o.vram_gb:g}" if o.vram_gb else "?",
            per,
        )
    console().print(table)


def _dur(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
