"""Batch front door: slots, idempotent enqueue on the real SQLite queue, output copy to real S3."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from nomad import batch
from nomad.config.schema import BatchJob
from nomad.errors import UsageError
from nomad.queue import open_queue
from nomad.queue.base import JobQueue

UTC = dt.UTC
WALLPAPER = BatchJob(
    name="wallpaper",
    schedule="0 7 * * *",
    workflow="flux_schnell",
    params={"prompt": "a calm lake at dawn"},
    output_key="wallpapers/{date}/{index}{ext}",
)


@pytest.fixture()
def queue(tmp_path: Path) -> JobQueue:
    q = open_queue(None, tmp_path)
    yield q
    q.close()


def t(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_due_slot_only_latest_missed() -> None:
    """After a week offline only the latest missed slot is due, not seven."""
    assert batch.due_slot("0 7 * * *", t(16, 7), t(23, 8)) == t(23, 7)
    assert batch.due_slot("0 7 * * *", t(23, 7), t(23, 8)) is None
    assert batch.due_slot("0 7 * * *", None, t(23, 6, 59)) == t(22, 7)


def test_tick_enqueues_each_slot_once(queue: JobQueue) -> None:
    """Ticking repeatedly (cron every minute) enqueues a slot exactly once, as a batch job."""
    fired = batch.tick(queue, [WALLPAPER], t(23, 7, 0))
    assert [f.slot for f in fired] == [t(23, 7)]
    assert batch.tick(queue, [WALLPAPER], t(23, 7, 1)) == []
    jobs = queue.list(user="batch:wallpaper")
    assert len(jobs) == 1
    assert jobs[0].front_door == "batch" and jobs[0].params == {"prompt": "a calm lake at dawn"}
    assert jobs[0].client_key == "batch:wallpaper:2026-11-23T07:00Z"
    assert len(batch.tick(queue, [WALLPAPER], t(24, 7, 0))) == 1


def test_two_schedulers_same_slot_one_job(queue: JobQueue) -> None:
    """Two schedulers firing the same slot produce one job (client_key idempotency)."""
    a = batch.fire(queue, WALLPAPER, t(23, 7))
    b = batch.fire(queue, WALLPAPER, t(23, 7))
    assert a.job.id == b.job.id
    assert len(queue.list(user="batch:wallpaper")) == 1


def test_find_unknown_lists_known() -> None:
    """An unknown batch name is a usage error that lists the configured ones."""
    with pytest.raises(UsageError, match="known: wallpaper"):
        batch.find([WALLPAPER], "wallpapr")


def test_output_key_bad_placeholder(queue: JobQueue) -> None:
    """A template with an unknown placeholder is a clear usage error."""
    job = batch.fire(queue, WALLPAPER, t(23, 7)).job
    with pytest.raises(UsageError, match="bad placeholder"):
        batch.output_key("x/{nope}", job, 0, "outputs/a.png")


@pytest.mark.integration
def test_collect_copies_outputs_once(queue: JobQueue, storage) -> None:  # type: ignore[no-untyped-def]
    """A succeeded batch job's output is copied to its dated key in real S3, exactly once."""
    job = batch.fire(queue, WALLPAPER, t(23, 7)).job
    storage.put_bytes(f"outputs/{job.id}/0.png", b"\x89PNG fake-bytes")
    leased = queue.lease("w1")
    assert leased is not None and leased.id == job.id and leased.lease_token
    assert queue.complete(job.id, leased.lease_token, outputs=[f"outputs/{job.id}/0.png"])
    assert batch.collect(queue, storage) == ["wallpapers/2026-11-23/0.png"]
    assert storage.get_bytes("wallpapers/2026-11-23/0.png") == b"\x89PNG fake-bytes"
    assert batch.collect(queue, storage) == []


def test_cli_list_and_run(tmp_path: Path) -> None:
    """`nomad batch run` enqueues into the configured queue and `list --json` shows the last run."""
    import json

    from click.testing import CliRunner

    from nomad.cli.main import cli

    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(
        "batch:\n  jobs:\n    - name: wallpaper\n      schedule: '0 7 * * *'\n"
        "      workflow: flux_schnell\n      params: {prompt: lake}\n"
    )
    base = ["-c", str(cfg), "--data-dir", str(tmp_path / "data"), "batch"]
    runner = CliRunner()
    ran = runner.invoke(cli, [*base, "run", "wallpaper", "--json"])
    assert ran.exit_code == 0, ran.output
    job_id = json.loads(ran.output)["job"]
    listed = json.loads(runner.invoke(cli, [*base, "list", "--json"]).output)
    assert listed[0]["name"] == "wallpaper" and listed[0]["last_job"] == job_id
    bad = runner.invoke(cli, [*base, "run", "nope"])
    assert bad.exit_code != 0
