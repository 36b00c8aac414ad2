"""`nomad run` (one workflow against ComfyUI) and `nomad workflows` (list/show/validate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nomad.cli.context import Ctx
from nomad.cli.output import console, emit_json

if TYPE_CHECKING:
    from nomad.comfy import ComfyEvent
    from nomad.workflows import Workflow


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        out[key.strip()] = value
    return out


def _dirs(ctx: Ctx) -> list[Path]:
    """Extra workflow folders from nomad.yaml (relative to the config file)."""
    return [(ctx.config_dir / d).resolve() for d in ctx.config.workflows.dirs]


def _load(ctx: Ctx, name: str) -> Workflow:
    from nomad.workflows import load_workflow

    return load_workflow(name, _dirs(ctx))


def _proxy(ctx: Ctx) -> str | None:
    """The SOCKS proxy when privacy is on (nomad.yaml or NOMAD_* overrides)."""
    privacy = ctx.config.privacy
    from nomad import privacy as privacy_seam

    privacy_seam.configure(privacy)
    return privacy_seam.proxy_for(privacy, "comfy")


class _Bar:
    """Feeds ComfyUI events into a rich progress bar: current node, then sampler steps."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task = progress.add_task("queued", total=None)

    def __call__(self, ev: ComfyEvent) -> None:
        label = f"node {ev.node} {ev.class_type or ''}".strip()
        if ev.type == "executing" and ev.node is not None:
            self.progress.update(self.task, description=label, total=None, completed=0)
        elif ev.type == "progress" and ev.max:
            self.progress.update(
                self.task,
                description=f"{label} step {ev.value}/{ev.max}",
                total=ev.max,
                completed=ev.value,
            )
        elif ev.type == "execution_cached" and ev.data.get("nodes"):
            self.progress.update(self.task, description=f"{len(ev.data['nodes'])} node(s) cached")


def _until_signal(coro: Any) -> Any:
    """Run ``coro``; on SIGTERM/SIGHUP its prompt is interrupted on ComfyUI, then exit 128+N."""
    from nomad.comfy.runner import StoppedBySignal, run_until_signal

    try:
        return run_until_signal(coro)
    except StoppedBySignal as stop:
        click.echo(f"stopped by {stop}: the prompt was interrupted on ComfyUI", err=True)
        sys.exit(128 + stop.signum)


def _n(v: int | float) -> str:
    if isinstance(v, int):
        return str(v)  # exact: float() would turn 2**64-1 into 2**64
    return str(int(v)) if v.is_integer() else str(v)


@click.command("run")
@click.argument("workflow")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Parameter value (repeat).")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Input image for edit workflows.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="Where outputs are saved.",
)
@click.option("--endpoint", help="ComfyUI URL (default: the running cluster).")
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds for the run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead.")
@click.pass_obj
def run(
    ctx: Ctx,
    workflow: str,
    sets: tuple[str, ...],
    image: Path | None,
    out_dir: Path,
    endpoint: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Run WORKFLOW once: bind --set values, upload inputs, save outputs, show timings."""
    from nomad.comfy.runner import resolve_endpoint, run_bound
    from nomad.privacy.guard import check_endpoint

    wf = _load(ctx, workflow)
    images = {"image": image.read_bytes()} if image else None
    if images and "image" not in wf.params:
        raise click.BadParameter(f"{wf.name} takes no input image", param_hint="--image")
    bound = wf.bind(_pairs(sets), images)
    url = resolve_endpoint(endpoint, ctx.data_dir)
    check_endpoint(url, _proxy(ctx))  # an .onion name with privacy off would go to DNS
    if as_json:
        summary, _ = _until_signal(
            run_bound(
                url, bound, out_dir=out_dir, proxy=_proxy(ctx), timeout=timeout,
                strip_metadata=ctx.config.privacy.strips_metadata(),
            )
        )
        emit_json(summary.to_json())
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    con = console()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=con,
        transient=True,
    ) as progress:
        summary, _ = _until_signal(
            run_bound(
                url,
                bound,
                out_dir=out_dir,
                proxy=_proxy(ctx),
                on_event=_Bar(progress),
                timeout=timeout,
                strip_metadata=ctx.config.privacy.strips_metadata(),
            )
        )
    t = summary.timings
    seed = f"  seed={bound.params['seed']}" if "seed" in bound.params else ""
    con.print(f"[bold]{wf.name}[/] on {url}{seed}")
    con.print(
        "  "
        + "  ".join(
            f"{k} {t.get(k, 0.0):.2f}s"
            for k in ("upload", "queue_wait", "model_load", "inference", "download", "total")
        )
    )
    for path in summary.paths:
        con.print(f"  → {path}")


@click.group("workflows", invoke_without_command=True)
@click.pass_context
def workflows(click_ctx: click.Context) -> None:
    """List, show, validate and import workflows (graph + binding)."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(list_cmd)


@workflows.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_cmd(ctx: Ctx, as_json: bool = False) -> None:
    """Every known workflow, with its output kind and parameters."""
    from nomad.workflows import list_workflows

    rows = list_workflows(_dirs(ctx))
    if as_json:
        emit_json(
            [
                {
                    "name": r.name,
                    "title": r.title,
                    "output": r.output_kind,
                    "params": r.params,
                    "models": r.models,
                    "path": str(r.path),
                    "error": r.error,
                }
                for r in rows
            ]
        )
        return
    from rich.table import Table

    table = Table("name", "output", "params", "models", "title")
    for r in rows:
        title = f"[red]{r.error}[/]" if r.error else r.title
        table.add_row(r.name, r.output_kind, ", ".join(r.params), str(r.models), title)
    console().print(table)


@workflows.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def show_cmd(ctx: Ctx, name: str, as_json: bool) -> None:
    """Parameters (type, default, bounds, graph target) and model files of NAME."""
    wf = _load(ctx, name)
    if as_json:
        emit_json(
            {
                "name": wf.name,
                "title": wf.title,
                "output": wf.output_kind,
                "params": {k: p.model_dump() for k, p in wf.params.items()},
                "models": [m.model_dump() for m in wf.models],
            }
        )
        return
    from rich.table import Table

    con = console()
    con.print(f"[bold]{wf.name}[/] — {wf.title} ({wf.output_kind})")
    table = Table("param", "type", "default", "allowed", "sets", "help")
    for key, p in wf.params.items():
        allowed = (
            ", ".join(map(str, p.choices))
            if p.choices
            else (f"{_n(p.min)}..{_n(p.max)}" if p.min is not None and p.max is not None else "")
        )
        sets = ", ".join(f"{n}.{i}" for n, i in p.targets) or ", ".join(p.sets)
        default = "random" if p.default is None and key == "seed" else str(p.default or "")
        table.add_row(key, p.type, default[:40], allowed, sets, p.help)
    con.print(table)
    for m in wf.models:
        con.print(f"  model {m.folder}/{m.file}  {m.url or '(no url)'}")


@workflows.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--endpoint", help="Also check against this ComfyUI's /object_info (URL).")
@click.option(
    "--object-info",
    "object_info_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check against a saved GET /object_info (JSON file).",
)
@click.option(
    "--no-models", is_flag=True, help="With a server: don't require the model files to be on it."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def validate_cmd(
    ctx: Ctx,
    path: Path,
    endpoint: str | None,
    object_info_file: Path | None,
    no_models: bool,
    as_json: bool,
) -> None:
    """Check bindings (a file or a folder) against their graphs, and against a server's schema.

    With --endpoint or --object-info every node class, input name, choice
    (model files included) and range is checked as ComfyUI's /prompt would,
    before anything is queued. PATH may also be an API-format graph (.json).
    """
    from nomad.errors import WorkflowError
    from nomad.workflows._server import load_object_info

    info = None
    if endpoint or object_info_file:
        url = _url(endpoint) if endpoint else None
        info = load_object_info(endpoint=url, path=object_info_file, proxy=_proxy(ctx))
    files = (
        sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    )
    report = {str(f): _problems(f, info, not no_models) for f in files}
    if as_json:
        emit_json(report)
    else:
        for name, problems in report.items():
            click.echo(f"{'ok ' if not problems else 'BAD'} {name}")
            for p in problems:
                click.echo(f"    {p}")
    bad = [f for f, p in report.items() if p]
    if bad or not files:
        raise WorkflowError(
            f"{len(bad)} of {len(files)} workflow(s) invalid"
            if files
            else f"no binding files (*.yaml) in {path}"
        )


def _url(endpoint: str) -> str:
    if not endpoint.startswith(("http://", "https://")):
        raise click.BadParameter(f"{endpoint!r} is not an http(s):// URL", param_hint="--endpoint")
    return endpoint.rstrip("/")


def _problems(path: Path, info: dict[str, Any] | None, check_models: bool) -> list[str]:
    """One line per problem of a binding file (or an API graph when ``info`` is given)."""
    from nomad.errors import WorkflowError
    from nomad.workflows import load_workflow_file
    from nomad.workflows._server import graph_problems, server_problems

    try:
        if path.suffix == ".json":
            if info is None:
                return ["an API graph needs --endpoint or --object-info to be checked"]
            graph = json.loads(path.read_text(encoding="utf-8"))
            return [str(p) for p in graph_problems(graph, info, check_models=check_models)]
        wf = load_workflow_file(path)
        problems = wf.problems()
        if info is not None:
            problems += server_problems(wf, info, check_models=check_models)
        return problems
    except WorkflowError as exc:
        return [exc.message]
    except ValueError as exc:
        return [f"not JSON: {exc}"]


@workflows.command("import")
@click.argument("ui_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--endpoint", help="Map widgets with this ComfyUI's /object_info (URL).")
@click.option(
    "--object-info",
    "object_info_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Map widgets with a saved GET /object_info (JSON file).",
)
@click.option("--name", help="Workflow name (default: from the file name).")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("workflows"),
    show_default=True,
    help="Folder for NAME.json + NAME.yaml (add it to workflows.dirs).",
)
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def import_cmd(
    ctx: Ctx,
    ui_file: Path,
    endpoint: str | None,
    object_info_file: Path | None,
    name: str | None,
    out_dir: Path,
    force: bool,
    as_json: bool,
) -> None:
    """Convert a saved UI workflow (subgraphs too) to API format + a binding skeleton."""
    from nomad.errors import WorkflowError
    from nomad.workflows._import import import_ui_workflow
    from nomad.workflows._server import load_object_info

    url = _url(endpoint) if endpoint else None
    info = load_object_info(endpoint=url, path=object_info_file, proxy=_proxy(ctx))
    result = import_ui_workflow(ui_file, info, out_dir, name=name, overwrite=force)
    if as_json:
        emit_json(
            {
                "name": result.name,
                "graph": str(result.graph_path),
                "binding": str(result.binding_path),
                "params": result.params,
                "models": result.models,
                "problems": result.problems,
            }
        )
    else:
        click.echo(f"wrote {result.graph_path} and {result.binding_path}")
        click.echo(f"  params: {', '.join(result.params) or 'none found'}")
        for model in result.models:
            click.echo(f"  model {model}")
        for problem in result.problems:
            click.echo(f"  problem: {problem}")
    if result.problems:
        raise WorkflowError(
            f"{result.name}: imported with {len(result.problems)} problem(s)",
            hint=f"edit {result.binding_path}, then `nomad workflows validate` it",
        )
