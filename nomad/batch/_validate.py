"""Check every batch job at load, before anything is queued: ``file:line: key: what``.

``nomad submit`` refuses an unknown workflow or a bad parameter; batch jobs
used to be accepted and queued (an unknown workflow woke a GPU to fail in
0.08 s; a bad ``{datex}`` placeholder failed every round, forever, after the
image was made). Now ``batch list/tick/run/serve`` and ``serve --with-batch``
refuse a config with any of these, listing all of them at once, exit 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad.batch import _keys
from nomad.batch._env import BatchEnv
from nomad.errors import ConfigError, NomadError

if TYPE_CHECKING:
    from nomad.config.schema import BatchJob

Loc = tuple[int | str, ...]
IMAGE_CHECKS = ("blank", "size")
NO_SEED = (
    "a graph file has no seed parameter, so a re-run after a rejection would repeat the same "
    "result: use a named workflow (with a binding) or max_tries: 1"
)


def validate(jobs: list[BatchJob], env: BatchEnv) -> None:
    """Raise one ConfigError listing every problem of every batch job (nothing when all are fine)."""
    found = problems(jobs, env)
    if not found:
        return
    from nomad.config.load import locate

    lines = [
        f"{locate(env.config_path, loc)}: {'.'.join(str(p) for p in loc)}: {msg}"
        for loc, msg in found
    ]
    raise ConfigError(
        "\n".join(lines),
        hint="fix batch.jobs in nomad.yaml (see docs/batch.md); nothing was queued",
    )


def problems(jobs: list[BatchJob], env: BatchEnv) -> list[tuple[Loc, str]]:
    """(location, message) for every problem, in file order."""
    out: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, job in enumerate(jobs):
        at: Loc = ("batch", "jobs", i)
        if job.name in seen:
            out.append(
                (
                    (*at, "name"),
                    f"duplicate batch job name {job.name!r} (also jobs[{seen[job.name]}])",
                )
            )
        seen.setdefault(job.name, i)
        kind, msgs = _workflow(job, env)
        out += [((*at, key), msg) for key, msg in msgs]
        out += [
            ((*at, "output_key"), f"{job.output_key!r} {m}") for m in _keys.problems(job.output_key)
        ]
        if job.manifest_key is not None:
            out += [
                ((*at, "manifest_key"), f"{job.manifest_key!r} {m}")
                for m in _keys.problems(job.manifest_key)
            ]
        out += [
            ((*at, "latest_key"), f"{job.latest_key!r} {m}")
            for m in _keys.problems(job.latest_key, _keys.LATEST_PLACEHOLDERS, unique=False)
        ]
        for j, check in enumerate(job.filters):
            msg = _filter(check, kind, env)
            if msg:
                out.append(((*at, "filters", j), msg))
    return out


def _workflow(job: BatchJob, env: BatchEnv) -> tuple[str, list[tuple[str, str]]]:
    """The output kind of the job's workflow ('image', 'video', '?') and what is wrong with it."""
    if job.workflow.endswith(".json"):
        path = graph_path(job.workflow, env.workflow_dirs)
        if path is None:
            return "?", [
                (
                    "workflow",
                    f"graph file {job.workflow} not found (relative paths: from the working directory or workflows.dirs)",
                )
            ]
        try:
            graph = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return "?", [("workflow", f"{path}: not a readable JSON graph ({exc})")]
        if not isinstance(graph, dict) or not all(isinstance(v, dict) for v in graph.values()):
            return "?", [("workflow", f"{path}: not an API-format graph")]
        if job.params:
            return "?", [
                (
                    "params",
                    "a graph file takes no params (they would be ignored); use a named workflow with a binding",
                )
            ]
        if job.filters and job.max_tries > 1:
            return "?", [("max_tries", NO_SEED)]
        return "?", []
    from nomad.serve.jobs import check_bindable
    from nomad.workflows import load_workflow

    try:
        wf = load_workflow(job.workflow, env.workflow_dirs)
    except NomadError as exc:
        return "?", [("workflow", exc.message)]
    msgs = [("workflow", f"workflow {wf.name} is broken: {p}") for p in wf.problems()]
    try:
        check_bindable(job.workflow, dict(job.params), {}, env.workflow_dirs)
    except NomadError as exc:
        msgs.append(("params", exc.message))
    return wf.output_kind, msgs


def _filter(check: Any, kind: str, env: BatchEnv) -> str | None:
    if check.check in IMAGE_CHECKS and kind == "video":
        return f"check {check.check!r} looks at images, and this workflow makes video"
    if check.check == "size" and not any(
        (check.width, check.height, check.min_width, check.min_height)
    ):
        return "check 'size' needs width/height or min_width/min_height"
    if check.check == "python":
        from nomad.batch._filters import load_hook

        try:
            load_hook(check.entry, env.hook_dir)
        except NomadError as exc:
            return exc.message
    if check.check == "command":
        exe = check.argv[0]
        if shutil.which(exe) is None and not (env.hook_dir and (env.hook_dir / exe).is_file()):
            return f"command {exe!r} not found (PATH, or a file next to nomad.yaml)"
    return None


def graph_path(name: str, dirs: tuple[str, ...] | list[str]) -> Path | None:
    """Where a ``.json`` graph workflow is found, by the same rule the worker uses."""
    for base in (Path(), *(Path(d) for d in dirs)):
        if (base / name).is_file():
            return base / name
    return None
