"""Job operations front doors share: parse ``--set``, upload inputs, enqueue, describe a job."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nomad.errors import UsageError
from nomad.queue.base import Job, JobQueue
from nomad.serve.outputs import OutputStore
from nomad.serve.timings import phase_timings, total_seconds

_PLACEHOLDER_PNG = b"\x89PNG\r\n\x1a\n"  # stands in for an uploaded input while validating


def parse_sets(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``k=v`` pairs; values parse as JSON when they can (numbers, booleans), else stay strings."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--set {item!r}: expected NAME=VALUE",
                hint="e.g. --set prompt='a cat' --set steps=4",
            )
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def upload_inputs(store: OutputStore, values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``param=PATH`` files to content-addressed keys (the same file is stored once)."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise UsageError(
                f"--input {item!r}: expected PARAM=PATH", hint="e.g. --input image=cat.png"
            )
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"--input {name}: cannot read {path}: {exc.strerror}") from None
        ext = Path(path).suffix.lower()
        key = f"inputs/{hashlib.sha256(data).hexdigest()}{ext}"
        store.put(key, data)
        out[name] = key
    return out


def submit(
    queue: JobQueue,
    workflow: str,
    params: dict[str, Any],
    *,
    inputs: dict[str, str] | None = None,
    client_key: str | None = None,
    user: str | None = None,
    workflow_dirs: Sequence[str | Path] | None = None,
) -> Job:
    """Enqueue from the shell (front door ``cli``); a graph file path is stored absolute.

    With ``workflow_dirs`` (the config's ``workflows.dirs``) a named workflow is
    loaded and bound first, so an unknown name or a bad ``--set`` is refused
    here instead of waking a GPU for a job that can only fail.
    """
    if workflow.endswith(".json"):
        path = Path(workflow)
        if not path.is_file():
            raise UsageError(f"workflow graph {workflow} not found")
        from nomad.workflows import read_graph

        read_graph(path)  # not JSON, a list, UI format…: refused here, not on a woken GPU
        workflow = str(path.resolve())
    elif workflow_dirs is not None:
        check_bindable(workflow, params, inputs or {}, workflow_dirs)
    return queue.enqueue(workflow, params, inputs=inputs, client_key=client_key, user=user)


def check_bindable(
    workflow: str, params: dict[str, Any], inputs: dict[str, str], dirs: Sequence[str | Path]
) -> None:
    """Raise WorkflowError unless ``workflow`` exists and binds ``params`` (inputs stand in as images)."""
    from nomad.workflows import load_workflow

    wf = load_workflow(workflow, dirs)
    wf.bind(params, images={name: _PLACEHOLDER_PNG for name in inputs})


def describe(job: Job, position: int | None = None) -> dict[str, Any]:
    """Everything ``nomad jobs show --json`` prints (no lease token: it is a capability)."""
    return {
        "id": job.id,
        "workflow": job.workflow,
        "status": job.status.value,
        "detail": job.detail,
        "front_door": job.front_door,
        "user": job.user,
        "params": job.params,
        "inputs": job.inputs,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": job.error,
        "outputs": job.outputs,
        "gpu": job.gpu,
        "cluster": job.cluster,
        "cost": job.cost,
        "progress": job.progress,
        "position": position,
        "times": job.times,
        "phases": {label: round(s, 3) for label, s in phase_timings(job)},
        "total_seconds": total_seconds(job),
    }


FIND_SCAN = 2000  # newest jobs searched for a short id prefix


def find_job(queue: JobQueue, ref: str) -> Job:
    """A job by its full id or a unique prefix (front doors show 8 characters, e.g. 2070bb5a).

    Exact ids are looked up directly; a prefix of at least 4 characters is
    matched among the newest :data:`FIND_SCAN` jobs. Unknown ⇒ ``JobNotFound``;
    ambiguous ⇒ ``UsageError`` naming the candidates.
    """
    from nomad.errors import JobNotFound

    ref = ref.strip()
    try:
        return queue.get(ref)
    except JobNotFound:
        if len(ref) < 4:
            raise JobNotFound(
                f"no job {ref!r}",
                hint="give at least 4 characters of the id (nomad jobs lists them)",
            ) from None
    matches = [j for j in queue.list(limit=FIND_SCAN) if j.id.startswith(ref.lower())]
    if not matches:
        raise JobNotFound(f"no job {ref!r}", hint="`nomad jobs` lists recent jobs")
    if len(matches) > 1:
        ids = ", ".join(j.id for j in matches[:5])
        raise UsageError(
            f"job id prefix {ref!r} matches {len(matches)} jobs ({ids})",
            hint="give more characters",
        )
    return matches[0]
