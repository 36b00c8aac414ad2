"""``nomad serve``, ``nomad submit``, ``nomad jobs``: thin wrappers over :mod:`nomad.serve`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json


@click.command("serve")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between autoscaler ticks.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM/SIGINT, seconds running jobs may finish before they are requeued.",
)
@click.option("--keep-up", is_flag=True, help="Leave clusters running when serve exits.")
@click.option(
    "--standby",
    is_flag=True,
    help="If another serve runs for this project, wait and take over when it stops "
    "(default: refuse, naming it).",
)
@click.option(
    "--with-bot",
    is_flag=True,
    help="Also run the Telegram bot (bot: in nomad.yaml, NOMAD_BOT_TOKEN) in this process.",
)
@click.option(
    "--with-batch",
    is_flag=True,
    help="Also run the batch.jobs cron scheduler in this process (no system cron needed).",
)
@click.option(
    "--batch-interval",
    type=click.FloatRange(min=0.05),
    default=30.0,
    show_default=True,
    help="With --with-batch: seconds between schedule checks.",
)
@click.pass_obj
def serve(
    obj: Ctx,
    interval: float,
    grace: float,
    keep_up: bool,
    standby: bool,
    with_bot: bool,
    with_batch: bool,
    batch_interval: float,
) -> None:
    """Run the queue, the autoscaler and the workers until SIGTERM/SIGINT.

    With --with-bot and --with-batch one process is a whole small deployment:
    front doors share the queue, and SIGTERM stops them too (queued jobs stay
    queued; the bot sends undelivered results on its next start).
    """
    from nomad.serve.server import ServeOptions
    from nomad.serve.server import serve as run

    if obj.verbose == 0:
        logging.getLogger("nomad.serve").setLevel(logging.INFO)
    opts = ServeOptions(
        interval=interval,
        grace_seconds=grace,
        keep_up=keep_up,
        standby=standby,
        with_bot=with_bot,
        with_batch=with_batch,
        batch_interval=batch_interval,
        config_path=obj.config_path,
    )
    asyncio.run(run(obj.config, obj.data_dir, options=opts))


@click.command("submit")
@click.argument("workflow")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="A workflow parameter.")
@click.option(
    "--input",
    "input_files",
    multiple=True,
    metavar="PARAM=PATH",
    help="An input file (uploaded to S3).",
)
@click.option(
    "--client-key", default=None, help="Idempotency key: the same key never makes a second job."
)
@click.option("--user", default=None, help="User reference (per-user limits apply).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@click.pass_obj
def submit(
    obj: Ctx,
    workflow: str,
    sets: tuple[str, ...],
    input_files: tuple[str, ...],
    client_key: str | None,
    user: str | None,
    as_json: bool,
) -> None:
    """Enqueue WORKFLOW (a workflow name or an API-format graph .json)."""
    from nomad.serve import jobs as svc

    params = svc.parse_sets(sets)
    with _queue(obj) as queue:
        inputs = svc.upload_inputs(_store(obj), input_files) if input_files else None
        job = svc.submit(
            queue, workflow, params, inputs=inputs, client_key=client_key, user=user,
            workflow_dirs=obj.config.workflows.dirs,
        )  # fmt: skip
        position = queue.position(job.id)
    if as_json:
        emit_json(svc.describe(job, position))
    else:
        click.echo(
            f"{job.id}  {job.status.value}" + (f"  #{position} in queue" if position else "")
        )


@click.group("jobs", invoke_without_command=True)
@click.option("--status", "statuses", multiple=True, help="Only jobs in this status (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs(ctx: click.Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List recent jobs (subcommands: show ID, cancel ID)."""
    if ctx.invoked_subcommand is not None:
        return
    from nomad.queue import JobStatus
    from nomad.serve.jobs import describe

    try:
        wanted = [JobStatus(s) for s in statuses] or None
    except ValueError:
        raise click.BadParameter(
            f"use one of {', '.join(s.value for s in JobStatus)}", param_hint="--status"
        ) from None
    with _queue(ctx.obj) as queue:
        found = queue.list(status=wanted, limit=limit)
    if as_json:
        emit_json([describe(j) for j in found])
        return
    from rich.table import Table

    table = Table("id", "workflow", "status", "age", "gpu", "cost", "detail", box=None)
    now = time.time()
    for j in found:
        age = now - j.times.get("queued_at", now)
        cost = f"${j.cost:.4f}" if j.cost is not None else ""
        table.add_row(
            j.id,
            _short(j.workflow),
            j.status.value,
            f"{age:.0f}s",
            j.gpu or "",
            cost,
            j.error or j.detail or "",
        )
    console().print(table)


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(obj: Ctx, job_id: str, as_json: bool) -> None:
    """One job, with per-phase timings: why did it take that long?"""
    from nomad.serve.jobs import describe, find_job

    with _queue(obj) as queue:
        job = find_job(queue, job_id)  # full id or a unique prefix (the bot shows 8 characters)
        info = describe(job, queue.position(job.id))
        if job.front_door == "batch":
            from nomad.batch import job_view

            info["batch"] = job_view(queue, job, project=obj.config.project)
    if as_json:
        emit_json(info)
        return
    _print_job(info)


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def cancel(obj: Ctx, job_id: str, as_json: bool) -> None:
    """Cancel a waiting or running job (a running one is interrupted in ComfyUI)."""
    from nomad.serve.jobs import describe, find_job

    with _queue(obj) as queue:
        job = queue.cancel(find_job(queue, job_id).id)
    if as_json:
        emit_json(describe(job))
    else:
        click.echo(f"{job.id}  {job.status.value}")


def _print_job(info: dict[str, Any]) -> None:
    out = console()
    out.print(
        f"[bold]{info['id']}[/]  {info['workflow']}  [bold]{info['status']}[/]"
        + (f"  ({info['detail']})" if info["detail"] else "")
    )
    for key in ("position", "attempts", "gpu", "cluster", "cost", "error"):
        if info[key] not in (None, ""):
            out.print(f"  {key}: {info[key]}")
    for key in info["outputs"]:
        out.print(f"  output: {key}")
    if info["phases"]:
        out.print("  phases:")
        for label, secs in info["phases"].items():
            out.print(f"    {label:<28} {secs:>9.2f} s")
    if info["total_seconds"] is not None:
        out.print(f"    {'total':<28} {info['total_seconds']:>9.2f} s")
    if info.get("batch"):
        _print_batch(info["batch"])


def _print_batch(b: dict[str, Any]) -> None:
    """The batch side of a job: stored keys and ready state (never claimed before they exist)."""
    out = console()
    out.print(f"  batch: {b['batch']} slot {b['slot']} try {b['try']}/{b['max_tries']} seed {b['seed']}")
    out.print(f"    state: {b['state']}" + ("  (ready)" if b["ready"] else ""))
    for key in b["stored_keys"]:
        out.print(f"    stored: {key}")
    if b["manifest_key"]:
        out.print(f"    manifest: {b['manifest_key']}")
    for label in ("rejected", "next_try", "slot_failed", "collect_error"):
        if b.get(label):
            out.print(f"    {label.replace('_', ' ')}: {b[label]}")
    cost = b.get("cost") or {}
    if cost.get("total_usd") is not None:
        out.print(f"    true cost: ${cost['total_usd']:.4f} ({cost.get('basis')})")


def _short(text: str, n: int = 32) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


class _queue:
    """Open the configured queue for one command and close it after."""

    def __init__(self, obj: Ctx) -> None:
        self.obj = obj

    def __enter__(self) -> Any:
        from nomad.queue import open_queue

        self.q = open_queue(self.obj.config, self.obj.data_dir)
        return self.q

    def __exit__(self, *exc: object) -> None:
        self.q.close()


def _store(obj: Ctx) -> Any:
    from nomad.dev.defaults import resolve_storage
    from nomad.serve.outputs import S3Outputs
    from nomad.storage import Storage

    storage = Storage(resolve_storage(obj.config, obj.data_dir))
    storage.ensure_bucket()
    return S3Outputs(storage)
