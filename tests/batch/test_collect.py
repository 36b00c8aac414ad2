"""Filter → store → manifest + latest on real S3 (SeaweedFS), on SQLite and PostgreSQL.

Real: the queue (both backends), SeaweedFS, Pillow. The worker is played by
the test (lease, store the output like serve does, complete): what runs the
job is not what is under test here (tests/batch/test_wallpaper_e2e.py runs it all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from nomad import batch
from nomad.config.schema import BatchJob
from nomad.queue import open_queue
from nomad.queue.base import JobQueue, JobStatus
from tests.batch.conftest import finish, flat_png, noise_png

pytestmark = pytest.mark.integration
UTC = dt.UTC
SLOT = dt.datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


def wallpaper(**changes: Any) -> BatchJob:
    base: dict[str, Any] = {
        "name": "wallpaper",
        "schedule": "0 7 * * *",
        "workflow": "flux_schnell",
        "params": {"prompt": "a calm lake"},
        "filters": [{"check": "blank"}, {"check": "size", "width": 32, "height": 32}],
    }
    return BatchJob.model_validate({**base, **changes})


def hook_module(tmp_path: Path, body: str) -> str:
    """Write a hook module next to the (pretend) nomad.yaml; unique name so imports never collide."""
    name = f"hooks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(body)
    return name


def test_accepted_output_stored_with_manifest_and_latest(
    both_queue: JobQueue, storage: Any
) -> None:
    """An accepted output lands at its key; the manifest next to it and `latest` describe it."""
    job = wallpaper()
    fired = batch.fire(both_queue, job, SLOT)
    png = noise_png()
    finish(both_queue, storage, fired.job.id, png)
    rep = batch.collect(both_queue, storage, jobs=[job])
    key = "batch/wallpaper/2026-11-23/0700/0.png"
    assert rep.stored == [key] and rep.ready == ["batch/wallpaper/2026-11-23/0700/manifest.json"]
    assert storage.get_bytes(key) == png
    manifest = json.loads(storage.get_bytes(rep.ready[0]))
    assert manifest["outputs"] == [
        {"key": key, "source": f"outputs/{fired.job.id}/0.png",
         "sha256": hashlib.sha256(png).hexdigest(), "size": len(png)}
    ]  # fmt: skip
    assert manifest["job"] == fired.job.id and manifest["slot"] == SLOT.isoformat()
    assert manifest["seed"] == fired.job.params["seed"] and manifest["workflow"] == "flux_schnell"
    assert manifest["cost"]["run_usd"] == 0.01 and "stored_at" in manifest["times"]
    assert [d["check"] for d in manifest["filters"][0]] == ["blank", "size"]
    latest = json.loads(storage.get_bytes("batch/wallpaper/latest.json"))
    assert latest["manifest_key"] == rep.ready[0] and latest["keys"] == [key]
    view = batch.job_view(both_queue, both_queue.get(fired.job.id))
    assert view is not None and view["ready"] and view["stored_keys"] == [key]
    assert batch.collect(both_queue, storage, jobs=[job]).stored == []


def test_succeeded_but_not_collected_is_not_ready(sqlite_queue: JobQueue, storage: Any) -> None:
    """`jobs show` does not claim the copy exists before it does: succeeded ≠ stored."""
    fired = batch.fire(sqlite_queue, wallpaper(), SLOT)
    finish(sqlite_queue, storage, fired.job.id, noise_png())
    view = batch.job_view(sqlite_queue, sqlite_queue.get(fired.job.id))
    assert view is not None and not view["ready"] and view["stored_keys"] == []
    assert "not yet stored" in view["state"]


def test_blank_output_rejected_then_new_seed_stored(both_queue: JobQueue, storage: Any) -> None:
    """A blank first result is refused (not stored); the slot runs again with a new seed; the second is stored."""
    job = wallpaper()
    first = batch.fire(both_queue, job, SLOT).job
    finish(both_queue, storage, first.id, flat_png())
    rep = batch.collect(both_queue, storage, jobs=[job])
    assert rep.rejected == [first.id] and rep.stored == [] and len(rep.retried) == 1
    second = both_queue.get(rep.retried[0])
    assert second.meta["try"] == 2 and second.meta["kind"] == "retry"
    assert second.params["seed"] != first.params["seed"]
    assert storage.list("batch/") == []
    finish(both_queue, storage, second.id, noise_png())
    rep = batch.collect(both_queue, storage, jobs=[job])
    assert rep.stored == ["batch/wallpaper/2026-11-23/0700/0.png"]
    slot = batch.slot_view(both_queue, "wallpaper", SLOT.isoformat())
    assert slot["ready"] and [t["job"] for t in slot["tries"]] == [first.id, second.id]
    assert "blank or near-uniform" in slot["tries"][0]["rejected"]
    manifest = json.loads(storage.get_bytes(slot["manifest_key"]))
    assert manifest["seed"] == second.params["seed"] and len(manifest["tries"]) == 2


def test_always_rejecting_hook_fails_slot_after_n_tries(
    both_queue: JobQueue, storage: Any, tmp_path: Path
) -> None:
    """A hook that rejects everything fails the slot after max_tries with its reason; nothing stored."""
    mod = hook_module(tmp_path, "def check(path):\n    return (False, 'not pretty enough')\n")
    job = wallpaper(filters=[{"check": "python", "entry": f"{mod}:check"}], max_tries=3)
    env = batch.BatchEnv(hook_dir=tmp_path)
    current = batch.fire(both_queue, job, SLOT, env=env).job
    seeds = []
    for n in range(3):
        seeds.append(current.params["seed"])
        finish(both_queue, storage, current.id, noise_png(seed=n))
        rep = batch.collect(both_queue, storage, jobs=[job], env=env)
        assert rep.rejected == [current.id] and rep.stored == []
        if n < 2:
            current = both_queue.get(rep.retried[0])
    assert rep.failed == ["wallpaper:2026-11-23T07:00Z"] and rep.retried == []
    assert len(set(seeds)) == 3
    slot = batch.slot_view(both_queue, "wallpaper", SLOT.isoformat())
    assert slot["status"] == "failed"
    assert slot["error"] == "all 3 tries rejected by the filters; last: python: not pretty enough"
    assert storage.list("batch/") == []
    rows = batch.schedule_table([job], both_queue, SLOT)
    assert rows[0]["last_status"] == "failed" and not rows[0]["ready"]


def test_command_hook_rejects_first_accepts_second(
    sqlite_queue: JobQueue, storage: Any, tmp_path: Path
) -> None:
    """A command hook (exit 1 + reason, then exit 0) drives one re-run; its reason is recorded."""
    script = tmp_path / "judge.sh"
    script.write_text(
        '#!/bin/sh\nif [ -e "$(dirname "$0")/seen" ]; then echo fine; exit 0; fi\n'
        'touch "$(dirname "$0")/seen"; echo "too dark"; exit 1\n'
    )
    script.chmod(0o755)
    job = wallpaper(filters=[{"check": "command", "argv": [str(script), "{path}"]}])
    env = batch.BatchEnv(hook_dir=tmp_path)
    first = batch.fire(sqlite_queue, job, SLOT, env=env).job
    finish(sqlite_queue, storage, first.id, noise_png())
    rep = batch.collect(sqlite_queue, storage, jobs=[job], env=env)
    view = batch.job_view(sqlite_queue, sqlite_queue.get(first.id))
    assert view is not None and view["rejected"] == "command: too dark"
    finish(sqlite_queue, storage, rep.retried[0], noise_png(seed=2))
    rep = batch.collect(sqlite_queue, storage, jobs=[job], env=env)
    assert rep.stored == ["batch/wallpaper/2026-11-23/0700/0.png"]


def test_broken_hook_is_an_error_not_a_verdict(
    sqlite_queue: JobQueue, storage: Any, tmp_path: Path
) -> None:
    """A hook that raises stores nothing, re-runs nothing, and shows as the job's error."""
    mod = hook_module(tmp_path, "def check(path):\n    raise RuntimeError('model file missing')\n")
    job = wallpaper(filters=[{"check": "python", "entry": f"{mod}:check"}])
    env = batch.BatchEnv(hook_dir=tmp_path)
    fired = batch.fire(sqlite_queue, job, SLOT, env=env).job
    finish(sqlite_queue, storage, fired.id, noise_png())
    rep = batch.collect(sqlite_queue, storage, jobs=[job], env=env)
    assert list(rep.errors) == [fired.id] and "model file missing" in rep.errors[fired.id]
    assert rep.retried == [] and rep.rejected == [] and storage.list("batch/") == []
    assert "model file missing" in batch.schedule_table([job], sqlite_queue, SLOT)[0]["error"]


def test_two_jobs_one_blocked_by_its_limit_other_runs_and_is_collected(
    both_queue: JobQueue, storage: Any
) -> None:
    """One batch job at its in-flight limit waits; the other fires and is collected in the same round."""
    hourly = wallpaper(name="hourly", schedule="0 * * * *", limits={"in_flight": 1})
    daily = wallpaper(name="daily")
    done = batch.fire(both_queue, daily, SLOT - dt.timedelta(days=1)).job
    finish(both_queue, storage, done.id, noise_png())
    stuck = batch.fire(both_queue, hourly, SLOT - dt.timedelta(hours=1)).job  # still queued
    assert both_queue.get(stuck.id).status is JobStatus.QUEUED
    rep = batch.run_round(both_queue, [hourly, daily], storage, SLOT + dt.timedelta(minutes=1))
    assert [f.name for f in rep.tick.fired] == ["daily"]
    assert "limits.in_flight 1" in rep.tick.waiting["hourly"] and not rep.tick.errors
    assert rep.collect.stored == ["batch/daily/2026-11-22/0700/0.png"]
    rows = {r["name"]: r for r in batch.schedule_table([hourly, daily], both_queue, SLOT)}
    assert "limits.in_flight" in rows["hourly"]["blocked"]


def test_one_jobs_collect_error_does_not_stop_the_others(
    sqlite_queue: JobQueue, storage: Any
) -> None:
    """S3 refusing one job's key is that job's error; the other job's output is stored in the same pass."""
    bad = wallpaper(name="bad", output_key="bad/{date}/{time}/{index}{ext}")
    good = wallpaper(name="good")
    a = batch.fire(sqlite_queue, bad, SLOT).job
    b = batch.fire(sqlite_queue, good, SLOT).job
    finish(sqlite_queue, storage, a.id, noise_png())
    finish(sqlite_queue, storage, b.id, noise_png())
    real_put = storage.put_bytes_if_absent

    def refusing(key: str, data: bytes, content_type: str | None = None) -> bool:
        if key.startswith("bad/"):
            from nomad.errors import StorageError

            raise StorageError(f"cannot store s3://x/{key}: AccessDenied")
        return bool(real_put(key, data, content_type))

    storage.put_bytes_if_absent = refusing
    rep = batch.collect(sqlite_queue, storage, jobs=[bad, good])
    assert rep.stored == ["batch/good/2026-11-23/0700/0.png"]
    assert list(rep.errors) == [a.id] and "AccessDenied" in rep.errors[a.id]


class CountingStorage:
    """Wraps a real Storage and counts every PUT per key (what S3 event notifications would see)."""

    def __init__(self, inner: Any, counts: Counter[str], lock: threading.Lock) -> None:
        self.inner, self.counts, self.lock = inner, counts, lock

    def get_bytes(self, key: str) -> bytes:
        return bytes(self.inner.get_bytes(key))

    def _count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        self._count(key)
        return str(self.inner.put_bytes(key, data, content_type))

    def put_bytes_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        self._count(key)
        return bool(self.inner.put_bytes_if_absent(key, data, content_type))


def test_two_collectors_at_once_one_put_per_key(
    queue_url: str, tmp_path: Path, storage: Any
) -> None:
    """Two collectors (own queue connections, started together) make exactly one PUT per key."""
    jobs = [wallpaper(name=f"w{i}") for i in range(4)]
    setup = open_queue(queue_url, tmp_path)
    try:
        for job in jobs:
            fired = batch.fire(setup, job, SLOT).job
            finish(setup, storage, fired.id, noise_png(seed=len(fired.id)))
    finally:
        setup.close()
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(2)
    reports: list[Any] = []

    def collector() -> None:
        q = open_queue(queue_url, tmp_path)
        try:
            start.wait(timeout=30)
            for _ in range(3):  # keep going, as a scheduler would, round after round
                reports.append(batch.collect(q, CountingStorage(storage, counts, lock), jobs=jobs))
        finally:
            q.close()

    threads = [threading.Thread(target=collector) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    assert not [r.errors for r in reports if r.errors]
    expected = {
        f"batch/w{i}/2026-11-23/0700/{f}" for i in range(4) for f in ("0.png", "manifest.json")
    }
    expected |= {f"batch/w{i}/latest.json" for i in range(4)}
    assert set(counts) == expected
    assert set(counts.values()) == {1}, counts
    assert sorted(k for r in reports for k in r.stored) == sorted(
        k for k in expected if k.endswith(".png")
    )


def test_conditional_write_refuses_a_second_put(storage: Any) -> None:
    """SeaweedFS honours If-None-Match: the second conditional PUT of a key writes nothing."""
    assert storage.put_bytes_if_absent("k/once.bin", b"first") is True
    assert storage.put_bytes_if_absent("k/once.bin", b"second") is False
    assert storage.get_bytes("k/once.bin") == b"first"


def test_collector_finds_an_old_run_behind_many_newer_jobs(
    sqlite_queue: JobQueue, storage: Any
) -> None:
    """A batch run buried under newer interactive jobs (past the listing limit) is still collected."""
    job = wallpaper()
    fired = batch.fire(sqlite_queue, job, SLOT).job
    finish(sqlite_queue, storage, fired.id, noise_png())
    for i in range(5):
        other = sqlite_queue.enqueue("g.json", {"n": i}, front_door="telegram")
        finish(sqlite_queue, storage, other.id, noise_png(seed=i))
    rep = batch.collect(sqlite_queue, storage, jobs=[job], limit=3)
    assert rep.stored == ["batch/wallpaper/2026-11-23/0700/0.png"]
    assert batch.collect(sqlite_queue, storage, jobs=[job], limit=3).stored == []
    assert (sqlite_queue.get_state(batch.STATE_SCOPE, "wallpaper") or {})["pending"] == []
