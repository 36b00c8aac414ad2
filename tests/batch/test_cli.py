"""`nomad batch …` and `nomad jobs show` for batch jobs, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.queue import open_queue
from nomad.testing.cli import run_nomad
from tests.batch.conftest import finish, noise_png

CONFIG = """\
project: t
batch:
  jobs:
    - name: wallpaper
      schedule: "0 7 * * *"
      workflow: flux_schnell
      params: {prompt: lake}
      filters: [{check: blank}]
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "nomad.yaml"
    path.write_text(CONFIG)
    return path


@pytest.mark.parametrize("sub", ["list", "show", "run", "tick", "serve"])
def test_every_batch_command_has_help(tmp_path: Path, sub: str) -> None:
    """`nomad batch SUB --help` works and documents itself."""
    code, out, _ = run_nomad(tmp_path, "batch", sub, "--help")
    assert code == 0 and "Usage: nomad batch " + sub in out


def test_tick_now_fires_that_slot_and_says_why(tmp_path: Path, cfg: Path) -> None:
    """`batch tick --now` decides with the given clock; a first start names the past slot it runs."""
    data = tmp_path / "data"
    args = ("-c", str(cfg), "batch", "tick", "--now", "2026-11-23T09:30Z", "--json")
    code, out, err = run_nomad(data, *args)
    assert code == 1  # no S3 here: the slot is enqueued anyway, collecting reports the error
    assert "no S3 storage configured" in json.loads(out)["errors"]["(collect)"]
    [fired] = json.loads(out)["fired"]
    assert fired["slot"] == "2026-11-23T07:00:00+00:00"
    assert fired["reason"] == "first start: running the latest past slot 2026-11-23 07:00Z"
    code, out, _ = run_nomad(data, *args)
    assert json.loads(out)["fired"] == []
    code, _, err = run_nomad(data, "-c", str(cfg), "batch", "tick", "--now", "yesterday")
    assert code == 2 and "'yesterday' is not a time" in err


def test_run_same_minute_failed_is_refused_then_forced(tmp_path: Path, cfg: Path) -> None:
    """`batch run` never returns a failed job as if new; --force queues a re-run."""
    data = tmp_path / "data"
    base = ("-c", str(cfg), "batch", "run", "wallpaper", "--slot", "2026-11-23T12:00Z", "--json")
    code, out, err = run_nomad(data, *base)
    assert code == 0, err
    first = json.loads(out)["job"]
    queue = open_queue(None, data)
    try:
        leased = queue.lease("w")
        assert leased is not None and leased.id == first
        queue.fail(first, leased.lease_token or "", "ComfyUI crashed", retry=False)
    finally:
        queue.close()
    code, _, err = run_nomad(data, *base)
    assert code == 2 and "already ran and failed (ComfyUI crashed" in err and "--force" in err
    code, out, err = run_nomad(data, *base, "--force")
    assert code == 0, err
    forced = json.loads(out)
    assert forced["job"] != first and forced["status"] == "queued" and "re-run 1" in forced["note"]


@pytest.mark.integration
def test_jobs_show_and_batch_show_report_stored_keys_and_ready(
    tmp_path: Path, cfg: Path, stack: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`jobs show` says 'not yet stored' until collected, then the keys; `batch show`/`list` agree."""
    from nomad.storage import Storage

    settings = stack.s3_settings("clishow")  # type: ignore[attr-defined]
    storage = Storage(settings)
    storage.ensure_bucket()
    for var, value in {
        "NOMAD_S3_ENDPOINT": settings.endpoint_url,
        "NOMAD_S3_ACCESS_KEY_ID": settings.access_key_id,
        "NOMAD_S3_SECRET_ACCESS_KEY": settings.secret_access_key,
        "NOMAD_S3_REGION": settings.region,
        "NOMAD_S3_BUCKET": "clishow",
    }.items():
        monkeypatch.setenv(var, value or "")
    data = tmp_path / "data"
    code, out, err = run_nomad(data, "-c", str(cfg), "batch", "run", "wallpaper", "--json")
    assert code == 0, err
    job_id = json.loads(out)["job"]
    queue = open_queue(None, data)
    try:
        finish(queue, storage, job_id, noise_png())
    finally:
        queue.close()
    code, out, err = run_nomad(data, "-c", str(cfg), "jobs", "show", job_id, "--json")
    assert code == 0, err
    shown = json.loads(out)["batch"]
    assert not shown["ready"] and shown["stored_keys"] == [] and "not yet stored" in shown["state"]
    code, out, err = run_nomad(data, "-c", str(cfg), "batch", "tick", "--json")
    assert code == 0, err
    stored = json.loads(out)["stored"]
    assert len(stored) == 1 and stored[0].startswith("batch/wallpaper/")
    code, out, _ = run_nomad(data, "-c", str(cfg), "jobs", "show", job_id)
    assert "state: stored  (ready)" in out and f"stored: {stored[0]}" in out
    code, out, _ = run_nomad(data, "-c", str(cfg), "batch", "show", "wallpaper", "--json")
    assert json.loads(out)["slot"]["keys"] == stored
    code, out, _ = run_nomad(data, "-c", str(cfg), "batch", "list", "--json")
    [row] = json.loads(out)
    assert row["ready"] and row["stored_keys"] == stored
