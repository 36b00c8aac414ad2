"""``nomad batch``: cron-triggered jobs (logic in nomad.batch). A front door: it only enqueues."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json


def _env(ctx: Ctx) -> Any:
    """Validate every batch job (ConfigError with file:line, exit 2) and return the BatchEnv."""
    from nomad.batch import BatchEnv, validate
    from nomad.config import find_config

    env = BatchEnv.from_config(ctx.config, find_config(ctx.config_path))
    validate(ctx.config.batch.jobs, env)
    return env


def _queue(ctx: Ctx) -> Any:
    from nomad.queue import open_queue

    return open_queue(ctx.config, ctx.data_dir)


def _when(value: str | None) -> dt.datetime:
    """--now / --slot: an ISO 8601 time (UTC when no zone), or now."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    from nomad.batch._schedule import as_utc
    from nomad.errors import UsageError

    try:
        return as_utc(dt.datetime.fromisoformat(value))
    except ValueError:
        raise UsageError(
            f"{value!r} is not a time", hint="use ISO 8601, e.g. 2026-11-30T07:00Z"
        ) from None


@click.group("batch")
def batch() -> None:
    """Cron-triggered batch jobs from `batch.jobs` in nomad.yaml (e.g. a daily wallpaper).

    Run `nomad batch tick` from system cron (every minute is fine: each slot is
    enqueued once), or `nomad batch serve`, or `nomad serve --with-batch`.
    Jobs run when `nomad serve` works the queue; each output passes the job's
    filters, is stored at its `output_key`, then a manifest and the job's
    `latest` pointer mark it ready. Every command checks all batch jobs first
    and refuses (exit 2, file:line) before queueing anything.
    """


@batch.command("list")
@click.option("--now", "now_opt", metavar="TIME", help="Pretend it is TIME (ISO 8601, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(ctx: Ctx, now_opt: str | None, as_json: bool) -> None:
    """Configured batch jobs: last slot and whether it is stored, what blocks them, next run."""
    from nomad.batch import schedule_table

    _env(ctx)
    queue = _queue(ctx)
    try:
        rows = schedule_table(ctx.config.batch.jobs, queue, _when(now_opt))
    finally:
        queue.close()
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("name", "schedule (UTC)", "last slot", "state", "next run", box=None)
    table.add_column("note", overflow="fold")
    for r in rows:
        state = "ready" if r["ready"] else (r["last_status"] or "-")
        note = r["error"] or r["blocked"] or r["skipped"] or (r["stored_keys"] or [""])[0]
        last, nxt = _short(r["last_slot"]), _short(r["next_slot"])
        table.add_row(r["name"], r["schedule"], last, state, nxt, note)
    console().print(table if rows else "no batch jobs configured (see `batch.jobs` in nomad.yaml)")


@batch.command("show")
@click.argument("name")
@click.option("--slot", "slot_opt", metavar="TIME", help="Which slot (default: the last one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show(ctx: Ctx, name: str, slot_opt: str | None, as_json: bool) -> None:
    """One batch job's slot: every try with its seed and filter verdict, stored keys, manifest."""
    from nomad.batch import STATE_SCOPE, find, slot_view

    _env(ctx)
    job = find(ctx.config.batch.jobs, name)
    queue = _queue(ctx)
    try:
        state = queue.get_state(STATE_SCOPE, name) or {}
        slot = _when(slot_opt).isoformat() if slot_opt else state.get("last_slot")
        info: dict[str, Any] = {"name": name, "schedule": job.schedule, "state": state}
        info["slot"] = slot_view(queue, name, slot) if slot else None
    finally:
        queue.close()
    if as_json:
        emit_json(info)
        return
    out = console()
    out.print(f"[bold]{name}[/]  {job.schedule}  {job.workflow}")
    for key in ("last_error", "blocked", "skipped"):
        if state.get(key):
            out.print(f"  {key}: {state[key]}")
    view = info["slot"]
    if view is None:
        out.print("  no run yet")
        return
    out.print(f"  slot {_short(view['slot'])}: {view['status']}")
    for t in view["tries"]:
        verdict = f"  rejected: {t['rejected']}" if t.get("rejected") else ""
        out.print(f"    try {t['try']}: job {t['job']} seed {t['seed']} {t['status']}{verdict}")
    for key in view["keys"]:
        out.print(f"  stored: {key}")
    if view["manifest_key"]:
        out.print(f"  manifest: {view['manifest_key']}")
    if view["error"]:
        out.print(f"  error: {view['error']}")


@batch.command("run")
@click.argument("name")
@click.option("--force", is_flag=True, help="Run the slot again if it already ran and failed.")
@click.option("--slot", "slot_opt", metavar="TIME", help="Which slot (default: this minute).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def run(ctx: Ctx, name: str, force: bool, slot_opt: str | None, as_json: bool) -> None:
    """Enqueue one run of NAME now (or re-run a failed slot with --force)."""
    from nomad.batch import find, run_now

    env = _env(ctx)
    job = find(ctx.config.batch.jobs, name)
    slot = _when(slot_opt).replace(second=0, microsecond=0)
    queue = _queue(ctx)
    try:
        fired, what = run_now(queue, job, slot, force=force, env=env)
    finally:
        queue.close()
    if as_json:
        emit_json({"name": name, "slot": fired.slot.isoformat(), "job": fired.job.id,
                   "status": fired.job.status.value, "note": what})  # fmt: skip
    else:
        console().print(f"{name}: {what}: job {fired.job.id} (`nomad jobs show {fired.job.id}`)")


@batch.command("tick")
@click.option("--now", "now_opt", metavar="TIME", help="Pretend it is TIME (ISO 8601, UTC).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tick_(ctx: Ctx, now_opt: str | None, as_json: bool) -> None:
    """Enqueue every due slot, then filter and store finished outputs (for system cron).

    Exits 1 when a batch job had an error (after every other job was handled).
    """
    rows = _tick(ctx, _when(now_opt))
    if as_json:
        emit_json(rows)
    else:
        _print_round(rows)
    if rows["errors"]:
        raise SystemExit(1)


@batch.command("serve")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between ticks.")
@click.pass_obj
def serve(ctx: Ctx, interval: float) -> None:
    """Tick forever (Ctrl-C to stop); a round that fails (queue down) is reported and retried."""
    from nomad.errors import ConfigError, NomadError

    _env(ctx)  # a bad config stops here, before the first round
    while True:
        try:
            _print_round(_tick(ctx, dt.datetime.now(dt.UTC)))
        except ConfigError:
            raise
        except NomadError as exc:
            console().print(f"[red]round failed[/]: {exc.message} (retrying in {interval:g} s)")
        time.sleep(interval)


def _short(iso: str | None) -> str:
    """``2026-11-30 07:00Z`` for an ISO time (tables stay narrow)."""
    if not iso:
        return "-"
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%MZ")


def _print_round(rows: dict[str, Any]) -> None:
    con = console()
    for f in rows["fired"]:
        con.print(f"queued {f['name']} slot {_short(f['slot'])} as job {f['job']} ({f['reason']})")
    for name, why in rows["waiting"].items():
        con.print(f"waiting {name}: {why}")
    for key in rows["stored"]:
        con.print(f"stored {key}")
    for key in rows["ready"]:
        con.print(f"ready {key}")
    for job_id in rows["retried"]:
        con.print(f"filter rejected a result: new try {job_id}")
    for sid in rows["failed"]:
        con.print(f"[red]slot failed[/] {sid}")
    for what, err in rows["errors"].items():
        con.print(f"[red]error[/] {what}: {err}")


def _tick(ctx: Ctx, now: dt.datetime) -> dict[str, Any]:
    from nomad.batch import run_round
    from nomad.dev.defaults import resolve_storage
    from nomad.errors import NomadError
    from nomad.storage import Storage

    env = _env(ctx)
    try:  # no S3 still enqueues due slots; collecting then reports the error
        storage: Any = Storage(resolve_storage(ctx.config, ctx.data_dir))
    except NomadError as exc:
        storage = exc
    queue = _queue(ctx)
    try:
        rep = run_round(queue, ctx.config.batch.jobs, storage, now, env=env)
    finally:
        queue.close()
    errors = {**rep.tick.errors, **rep.collect.errors}
    if rep.error:
        errors["(collect)"] = rep.error
    return {
        "fired": [
            {"name": f.name, "slot": f.slot.isoformat(), "job": f.job.id, "reason": f.reason}
            for f in rep.tick.fired
        ],
        "waiting": rep.tick.waiting,
        "stored": rep.collect.stored,
        "ready": rep.collect.ready,
        "rejected": rep.collect.rejected,
        "retried": rep.collect.retried,
        "failed": rep.collect.failed,
        "errors": errors,
    }
