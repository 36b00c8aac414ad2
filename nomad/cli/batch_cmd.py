"""``nomad batch``: cron-triggered jobs (logic in nomad.batch). A front door: it only enqueues."""

from __future__ import annotations

import datetime as dt
import time

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json


def _queue(ctx: Ctx):  # type: ignore[no-untyped-def]
    from nomad.queue import open_queue

    return open_queue(ctx.config, ctx.data_dir)


@click.group("batch")
def batch() -> None:
    """Cron-triggered batch jobs from `batch.jobs` in nomad.yaml (e.g. a daily wallpaper).

    Run `nomad batch tick` from system cron (every minute is fine: each slot is
    enqueued once), or `nomad batch serve` as a long-running scheduler.
    Jobs run when `nomad serve` works the queue; outputs are copied to each
    job's `output_key` in the outputs bucket.
    """


@batch.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(ctx: Ctx, as_json: bool) -> None:
    """Configured batch jobs with their last and next run."""
    from nomad.batch import schedule_table

    rows = schedule_table(ctx.config.batch.jobs, _queue(ctx), dt.datetime.now(dt.UTC))
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("name", "schedule (UTC)", "workflow", "last run", "next run", box=None)
    for r in rows:
        table.add_row(r["name"], r["schedule"], r["workflow"], r["last_slot"] or "-", r["next_slot"])
    console().print(table if rows else "no batch jobs configured (see `batch.jobs` in nomad.yaml)")


@batch.command("run")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def run(ctx: Ctx, name: str, as_json: bool) -> None:
    """Enqueue one run of NAME now (idempotent within the same minute)."""
    from nomad.batch import find, fire

    job = find(ctx.config.batch.jobs, name)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    fired = fire(_queue(ctx), job, now)
    if as_json:
        emit_json({"name": name, "slot": fired.slot.isoformat(), "job": fired.job.id})
    else:
        console().print(f"queued {name} as job {fired.job.id} (`nomad jobs show {fired.job.id}`)")


@batch.command("tick")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tick_(ctx: Ctx, as_json: bool) -> None:
    """Enqueue every due slot and copy finished outputs to their keys (for system cron)."""
    rows = _tick(ctx)
    if as_json:
        emit_json(rows)
        return
    for f in rows["fired"]:
        console().print(f"queued {f['name']} slot {f['slot']} as job {f['job']}")
    for key in rows["stored"]:
        console().print(f"stored {key}")


@batch.command("serve")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between ticks.")
@click.pass_obj
def serve(ctx: Ctx, interval: float) -> None:
    """Tick forever (Ctrl-C to stop)."""
    con = console()
    while True:
        rows = _tick(ctx)
        for f in rows["fired"]:
            con.print(f"queued {f['name']} slot {f['slot']} as job {f['job']}")
        time.sleep(interval)


def _tick(ctx: Ctx) -> dict[str, list]:  # type: ignore[type-arg]
    from nomad.batch import collect, tick
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    queue = _queue(ctx)
    fired = tick(queue, ctx.config.batch.jobs, dt.datetime.now(dt.UTC))
    stored = collect(queue, Storage(resolve_storage(ctx.config, ctx.data_dir)))
    return {
        "fired": [{"name": f.name, "slot": f.slot.isoformat(), "job": f.job.id} for f in fired],
        "stored": stored,
    }
