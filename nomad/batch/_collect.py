"""After a batch run succeeds: filter, store, write the manifest, move ``latest`` — once.

For each succeeded batch job not yet collected:

1. **claim** it in the queue database (one atomic statement; a claim older
   than ``CLAIM_SECONDS`` is presumed dead and may be taken over), so of two
   collectors only one works on a job;
2. run the job's **filters** on every output; a rejection records the
   decisions and enqueues the slot's next try with a new seed, or fails the
   slot after ``max_tries`` — nothing is stored;
3. **store** each output at its templated key, then the **manifest** next to
   them, each with an S3 conditional write (``If-None-Match: *``), so even a
   takeover after a crash never writes a key twice; then point ``latest``
   at the manifest (only forward: an older slot never replaces a newer one);
4. record the outcome on the job (``batch-collected``) and the slot.

"Ready" means the manifest exists: it is written after every output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nomad.batch import _keys
from nomad.batch._cost import estimate, estimate_wake
from nomad.batch._env import BatchEnv
from nomad.batch._filters import Decision, run_checks
from nomad.batch._runs import SLOT_SCOPE, STATE_SCOPE, _error_text, fire, slot_id
from nomad.errors import NomadError
from nomad.queue.base import Job, JobQueue, JobStatus

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob

COLLECTED_SCOPE = "batch-collected"  # key: job id -> outcome (stored / rejected / failed)
CLAIM_SCOPE = "batch-claim"  # key: job id -> which collector works on it
CLAIM_SECONDS = 600.0


@dataclass
class CollectReport:
    """What one collect pass did."""

    stored: list[str] = field(default_factory=list)  # output keys written
    ready: list[str] = field(default_factory=list)  # manifest keys written
    rejected: list[str] = field(default_factory=list)  # job ids whose output a filter refused
    retried: list[str] = field(default_factory=list)  # job ids of new tries
    failed: list[str] = field(default_factory=list)  # slot ids that gave up
    errors: dict[str, str] = field(default_factory=dict)  # job id -> error (retried next pass)


def collect(
    queue: JobQueue,
    storage: Any,
    *,
    jobs: list[BatchJob] | None = None,
    env: BatchEnv | None = None,
    now: dt.datetime | None = None,
    limit: int = 200,
) -> CollectReport:
    """Collect every finished batch run not yet collected; each job's error is its own."""
    env = env or BatchEnv()
    configs = {j.name: j for j in jobs or []}
    report = CollectReport()
    finished = queue.list(status=[JobStatus.SUCCEEDED], limit=limit)
    candidates = {j.id: j for j in _pending(queue, configs)}
    candidates.update({j.id: j for j in finished if j.front_door == "batch"})
    for job in candidates.values():
        if job.status is not JobStatus.SUCCEEDED or queue.get_state(COLLECTED_SCOPE, job.id):
            continue
        owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        cfg = configs.get(str(job.meta.get("batch")))
        hold = claim_seconds(cfg, len(job.outputs))
        if not queue.claim_state(CLAIM_SCOPE, job.id, {"owner": owner}, stale_after=hold):
            continue  # another collector is on it
        try:
            if queue.get_state(COLLECTED_SCOPE, job.id):  # finished while we were claiming
                continue
            _collect_one(
                queue,
                storage,
                job,
                cfg,
                env,
                now,
                finished,
                report,
            )
        except Exception as exc:  # S3 down, a broken hook: this job's, retried next pass
            report.errors[job.id] = _error_text(exc)
            _note_job(queue, job, last_error=report.errors[job.id])
        finally:  # release our claim (not one a takeover holds now)
            if (queue.get_state(CLAIM_SCOPE, job.id) or {}).get("owner") == owner:
                queue.delete_state(CLAIM_SCOPE, job.id)
    return report


def claim_seconds(cfg: BatchJob | None, outputs: int) -> float:
    """How long a collector's claim holds before it is presumed dead: longer than the slowest
    its hooks may legitimately take (command timeouts), so a slow hook is never taken over."""
    hooks = sum(c.timeout for c in (cfg.filters if cfg else []) if c.check == "command")
    return CLAIM_SECONDS + hooks * max(1, outputs)


def _pending(queue: JobQueue, configs: dict[str, BatchJob]) -> list[Job]:
    """Runs the batch jobs enqueued and not yet seen finished, however old (a collector that was
    down for a week still finds them); finished-and-handled ones are dropped from the list."""
    out: list[Job] = []
    for name in configs:
        state = queue.get_state(STATE_SCOPE, name) or {}
        ids = list(state.get("pending", []))
        keep = []
        for job_id in ids:
            try:
                job = queue.get(job_id)
            except NomadError:
                continue
            handled = job.status.finished and (
                job.status is not JobStatus.SUCCEEDED or queue.get_state(COLLECTED_SCOPE, job_id)
            )
            if not handled:
                keep.append(job_id)
                out.append(job)
        if keep != ids:
            fresh = queue.get_state(STATE_SCOPE, name) or {}
            added = [p for p in fresh.get("pending", []) if p not in ids]  # fired meanwhile
            fresh["pending"] = keep + added
            queue.put_state(STATE_SCOPE, name, fresh)
    return out


def _collect_one(
    queue: JobQueue,
    storage: Any,
    job: Job,
    cfg: BatchJob | None,
    env: BatchEnv,
    now: dt.datetime | None,
    neighbours: list[Job],
    report: CollectReport,
) -> None:
    meta = job.meta
    name = str(meta.get("batch", "batch"))
    queued = dt.datetime.fromtimestamp(job.times.get("queued_at", 0.0), dt.UTC)
    slot = dt.datetime.fromisoformat(str(meta["slot"])) if meta.get("slot") else queued
    sid = slot_id(name, slot, int(meta.get("rerun") or 0))
    datas = [storage.get_bytes(src) for src in job.outputs]
    checks = list(cfg.filters) if cfg is not None else []
    decisions: list[list[Decision]] = []
    for src, data in zip(job.outputs, datas, strict=True):
        decisions.append(run_checks(checks, data, _keys.ext_of(src), env.hook_dir))
    refused = [d for ds in decisions for d in ds if not d.accepted]
    verdicts = [[d.to_json() for d in ds] for ds in decisions]
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat()
    if not job.outputs:
        refused = [Decision("outputs", False, "the run produced no output")]
    if refused:
        _rejected(queue, job, cfg, env, sid, slot, refused[0], verdicts, stamp, report)
        return
    template = cfg.output_key if cfg is not None else str(meta.get("output_key"))
    keys = []
    for i, src in enumerate(job.outputs):
        keys.append(_keys.render(template, _keys.values(name, slot, job.id, i, _keys.ext_of(src))))
    if len(set(keys)) != len(keys):
        raise NomadError(
            f"batch job {name}: {len(keys)} outputs but output_key {template!r} gives them one key",
            hint="add {index} to output_key",
        )
    base_vals = _keys.values(name, slot, job.id, 0, "")
    mkey = _keys.manifest_key(template, cfg.manifest_key if cfg else None, base_vals)
    if mkey in keys:
        mkey = keys[0] + ".manifest.json"
    tries = _try_jobs(queue, sid, job)
    cost = estimate(
        tries, estimate_wake(tries, queue.get_state("autoscaler", "status"), neighbours)
    )
    outputs = []
    for key, src, data in zip(keys, job.outputs, datas, strict=True):
        ctype = mimetypes.guess_type(key)[0] or "application/octet-stream"
        if storage.put_bytes_if_absent(key, data, ctype):
            report.stored.append(key)
        outputs.append(
            {
                "key": key,
                "source": src,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        )
    manifest = {
        "name": name,
        "slot": slot.isoformat(),
        "job": job.id,
        "tries": _tries(queue, sid),
        "workflow": job.workflow,
        "params": job.params,
        "seed": meta.get("seed"),
        "outputs": outputs,
        "filters": verdicts,
        "gpu": job.gpu,
        "cluster": job.cluster,
        "cost": cost,
        "times": {**job.times, "stored_at": dt.datetime.now(dt.UTC).timestamp()},
        "manifest_key": mkey,
        "created_at": stamp,
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    if storage.put_bytes_if_absent(mkey, body, "application/json"):
        report.ready.append(mkey)
    latest = _keys.render(cfg.latest_key if cfg else "batch/{name}/latest.json", {"name": name})
    _move_latest(storage, latest, {"name": name, "slot": slot.isoformat(), "job": job.id,
                                   "manifest_key": mkey, "keys": keys, "updated_at": stamp})  # fmt: skip
    outcome = {"status": "stored", "keys": keys, "manifest_key": mkey, "latest_key": latest,
               "filters": verdicts, "cost": cost, "at": stamp}  # fmt: skip
    queue.put_state(COLLECTED_SCOPE, job.id, outcome)
    _note_slot(queue, sid, status="ready", keys=keys, manifest_key=mkey, job=job.id, error=None)
    _note_job(queue, job, last_error=None)


def _rejected(
    queue: JobQueue,
    job: Job,
    cfg: BatchJob | None,
    env: BatchEnv,
    sid: str,
    slot: dt.datetime,
    why: Decision,
    verdicts: list[list[dict[str, Any]]],
    stamp: str,
    report: CollectReport,
) -> None:
    """Record a rejection; enqueue the next try with a new seed, or fail the slot."""
    attempt = int(job.meta.get("try") or 1)
    max_tries = cfg.max_tries if cfg is not None else int(job.meta.get("max_tries") or 1)
    reason = f"{why.check}: {why.reason}"
    report.rejected.append(job.id)
    if attempt < max_tries and cfg is not None:
        nxt = fire(queue, cfg, slot, env=env, attempt=attempt + 1, kind="retry",
                   rerun=int(job.meta.get("rerun") or 0))  # fmt: skip
        report.retried.append(nxt.job.id)
        outcome = {
            "status": "rejected",
            "reason": reason,
            "filters": verdicts,
            "next": nxt.job.id,
            "at": stamp,
        }
        slot_note: dict[str, Any] = {"status": "running", "error": None}
    else:
        error = f"all {attempt} tries rejected by the filters; last: {reason}"
        outcome = {
            "status": "rejected",
            "reason": reason,
            "filters": verdicts,
            "slot_failed": error,
            "at": stamp,
        }
        slot_note = {"status": "failed", "error": error}
        report.failed.append(sid)
    queue.put_state(COLLECTED_SCOPE, job.id, outcome)
    _note_slot(queue, sid, **slot_note)
    _record_try(queue, sid, job.id, reason)


def _move_latest(storage: Any, key: str, doc: dict[str, Any]) -> None:
    """Point ``latest`` at this slot unless it already points at a newer one."""
    from nomad.storage import ObjectNotFound

    try:
        current = json.loads(storage.get_bytes(key))
        if str(current.get("slot", "")) > doc["slot"]:
            return
        if current.get("manifest_key") == doc["manifest_key"]:
            return  # already there (a takeover after a crash): no second PUT
    except ObjectNotFound:
        pass
    except ValueError:
        pass  # not ours / unreadable: replace it
    storage.put_bytes(key, json.dumps(doc, indent=2, sort_keys=True).encode(), "application/json")


def _try_jobs(queue: JobQueue, sid: str, last: Job) -> list[Job]:
    """Every try of the slot up to ``last`` (rejected tries were paid for too)."""
    jobs = []
    for t in _tries(queue, sid):
        if t.get("job") and t["job"] != last.id:
            try:
                jobs.append(queue.get(t["job"]))
            except NomadError:
                continue
    return [*jobs, last]


def _tries(queue: JobQueue, sid: str) -> list[dict[str, Any]]:
    return list((queue.get_state(SLOT_SCOPE, sid) or {}).get("tries", []))


def _record_try(queue: JobQueue, sid: str, job_id: str, rejected: str) -> None:
    rec = queue.get_state(SLOT_SCOPE, sid) or {"tries": []}
    for t in rec.get("tries", []):
        if t.get("job") == job_id:
            t["rejected"] = rejected
    queue.put_state(SLOT_SCOPE, sid, rec)


def _note_slot(queue: JobQueue, sid: str, **fields: Any) -> None:
    rec = queue.get_state(SLOT_SCOPE, sid) or {"tries": []}
    for k, v in fields.items():
        if v is None:
            rec.pop(k, None)
        else:
            rec[k] = v
    queue.put_state(SLOT_SCOPE, sid, rec)


def _note_job(queue: JobQueue, job: Job, **fields: Any) -> None:
    name = str(job.meta.get("batch", ""))
    if not name:
        return
    state = queue.get_state(STATE_SCOPE, name) or {}
    for k, v in fields.items():
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    queue.put_state(STATE_SCOPE, name, state)
