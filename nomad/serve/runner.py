"""Running one job on one ComfyUI endpoint: the seam between workers and ComfyUI.

Workers only know the :class:`Runner` protocol; :class:`ComfyRunner` is the
real one (inputs from S3 → ``nomad.workflows`` binding → ``ComfyClient.run``).
Tests of queue mechanics plug in their own runner without a ComfyUI.
Whose fault a failure is, and so whether it may spend one of the job's
attempts, is decided here, once (:func:`failure_kind`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from nomad.errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyValidationError,
    NomadError,
    PrivacyError,
    QueueError,
    StorageError,
    UsageError,
    WorkflowError,
)
from nomad.queue.base import Job
from nomad.serve.outputs import OutputStore

Progress = Callable[[float], None]
log = logging.getLogger(__name__)
# what POST /prompt refuses; unknown inputs are ignored by ComfyUI, so they don't fail a job
_FATAL = {
    "no_prompt", "bad_node", "unknown_class", "missing_input", "missing_model", "not_in_list",
    "out_of_range", "bad_link", "type_mismatch", "no_outputs",
}  # fmt: skip


@dataclass(frozen=True)
class RunOutput:
    """One produced file: its extension (no dot) and bytes."""

    ext: str
    data: bytes = field(repr=False)


@dataclass
class RunReport:
    """What a run produced, with absolute phase stamps (``uploaded_at``, ``executing_at``…)."""

    outputs: list[RunOutput]
    times: dict[str, float] = field(default_factory=dict)


class Runner(Protocol):
    """Runs a job's graph on an endpoint; ``interrupt`` stops whatever that endpoint runs."""

    async def run(self, job: Job, endpoint: str, progress: Progress) -> RunReport: ...

    async def interrupt(self, endpoint: str) -> None: ...


FailureKind = Literal["job", "endpoint", "infra"]


def failure_kind(exc: BaseException) -> FailureKind:
    """Whose fault a failed run is; only ``job`` may spend one of the job's attempts.

    - ``job``: the job itself is wrong or its graph failed (bad workflow or
      parameters, ComfyUI validation, a node raising). Running it again gives
      the same answer, so it fails now.
    - ``endpoint``: the ComfyUI server did not answer, dropped the connection,
      crashed or timed out. Another try (there or on another GPU) may work;
      the job is handed back without losing an attempt.
    - ``infra``: object storage or the queue is unreachable. The job waits
      with backoff, keeping its lease, and loses nothing.
    Anything unexpected counts as ``job``: a bug must not loop a job forever.
    """
    if isinstance(exc, WorkflowError | UsageError | ComfyValidationError | ComfyExecutionError):
        return "job"
    if isinstance(exc, StorageError | QueueError):
        return "infra"
    if isinstance(exc, ComfyError | PrivacyError | TimeoutError | OSError):
        return "endpoint"  # a silent proxy (PrivacyError) is the way to the endpoint failing
    return "job"


def is_transient(exc: BaseException) -> bool:
    """Worth another try: anything that is not the job's own fault (see :func:`failure_kind`)."""
    return failure_kind(exc) != "job"


class ComfyRunner:
    """The real runner: ``nomad.comfy.ComfyClient`` against one ComfyUI server."""

    def __init__(
        self,
        store: OutputStore | None,
        *,
        proxy: str | None = None,
        run_timeout: float = 3600.0,
        workflow_dirs: tuple[Path, ...] = (),
    ) -> None:
        self.store = store
        self.proxy = proxy
        self.run_timeout = run_timeout
        self.workflow_dirs = workflow_dirs
        self._schemas: dict[str, dict[str, Any] | None] = {}  # endpoint -> its /object_info

    def forget_endpoints(self, endpoints: list[str]) -> None:
        """A (re)woken cluster: fetch its ``/object_info`` again on first use (once per wake)."""
        for endpoint in endpoints:
            self._schemas.pop(endpoint, None)

    async def run(self, job: Job, endpoint: str, progress: Progress) -> RunReport:
        """Fetch inputs, bind the workflow, run it, and stamp the phases on the wall clock."""
        from nomad.comfy import ComfyClient, ComfyEvent

        images = {p: await asyncio.to_thread(self._get, key) for p, key in job.inputs.items()}
        graph, inputs = await asyncio.to_thread(resolve_graph, job, images, self.workflow_dirs)

        def on_event(ev: ComfyEvent) -> None:
            if ev.fraction is not None:
                progress(ev.fraction)

        t0 = time.time()
        async with ComfyClient(endpoint, proxy=self.proxy, run_timeout=self.run_timeout) as client:
            await self._check(client, endpoint, graph)
            result = await client.run(graph, inputs=inputs, on_event=on_event)
        tm = result.timings
        uploaded = t0 + tm.get("upload", 0.0)
        executing = uploaded + tm.get("queue_wait", 0.0)
        loaded = executing + tm.get("model_load", 0.0)  # loaded_at > executing_at: a cold cache
        executed = executing + tm.get("execution", 0.0)
        times = {
            "uploaded_at": uploaded,
            "executing_at": executing,
            "loaded_at": loaded,
            "executed_at": executed,
        }
        return RunReport([RunOutput(o.extension, o.data) for o in result.outputs], times)

    async def _check(self, client: Any, endpoint: str, graph: dict[str, Any]) -> None:
        """Fail a job that can only fail (unknown class, missing model, value out of range…).

        Checked against the endpoint's ``/object_info``, fetched once per wake;
        a server that does not serve it is not checked (``/prompt`` still is).
        """
        from nomad.comfy._object_info import check_graph

        if endpoint not in self._schemas:
            try:
                self._schemas[endpoint] = await client.object_info()
            except (ComfyConnectionError, PrivacyError):
                raise  # the server (or the proxy) did not answer: ask again next run, don't skip
            except NomadError as exc:
                log.warning("no /object_info from %s (%s): jobs go unchecked", endpoint, exc)
                self._schemas[endpoint] = None
        schema = self._schemas[endpoint]
        if schema is None:
            return
        fatal = [p for p in check_graph(graph, schema) if p.kind in _FATAL]
        if fatal:
            lines = "; ".join(str(p) for p in fatal[:5])
            more = f" (and {len(fatal) - 5} more)" if len(fatal) > 5 else ""
            raise ComfyValidationError(
                f"this ComfyUI would refuse the graph: {lines}{more}",
                hint="`nomad workflows validate --endpoint URL` shows every problem",
            )

    async def interrupt(self, endpoint: str) -> None:
        """Ask ComfyUI to stop the running prompt (best effort: the job is cancelled either way)."""
        from nomad.comfy import ComfyClient

        async with ComfyClient(endpoint, proxy=self.proxy, timeout=10) as client:
            await client.interrupt()

    async def healthy(self, endpoint: str) -> bool:
        """Whether the endpoint answers ``/system_stats`` (a worker asks before leasing again).

        A proxy that does not answer is a no (PrivacyError at its handshake deadline), never
        an exception that would end the worker."""
        from nomad.comfy import ComfyClient

        try:
            async with ComfyClient(endpoint, proxy=self.proxy, timeout=5) as client:
                await client.health()
        except (ComfyError, PrivacyError, OSError, TimeoutError):
            return False
        return True

    def _get(self, key: str) -> bytes:
        if self.store is None:
            raise StorageError(f"job input {key} needs object storage, and none is configured")
        return self.store.get(key)


def resolve_graph(
    job: Job, images: dict[str, bytes], dirs: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The API-format graph for a job: a named workflow bound to its params, or a graph file.

    Named workflows go through ``nomad.workflows`` (parameter bindings,
    bounds). A workflow that is a path to a ``.json`` API-format graph runs
    as is (inputs by file name), which is how ad-hoc graphs are submitted.
    """
    path = _graph_file(job.workflow, dirs)
    if path is not None:
        return _read_graph(path), images
    try:
        load_workflow: Any = importlib.import_module("nomad.workflows").load_workflow
    except (ImportError, AttributeError) as exc:
        raise WorkflowError(
            f"workflow {job.workflow!r}: named workflows are not available here",
            hint="submit an API-format graph file (.json) instead",
        ) from exc
    bound: Any = load_workflow(job.workflow, dirs).bind(job.params, images=images)
    return dict(bound.graph), dict(bound.inputs)


def _graph_file(name: str, dirs: tuple[Path, ...]) -> Path | None:
    if not name.endswith(".json"):
        return None
    for base in (Path(), *dirs):
        candidate = base / name
        if candidate.is_file():
            return candidate
    raise WorkflowError(
        f"workflow graph file {name} not found",
        hint="give a path readable by `nomad serve` (absolute is safest)",
    )


def _read_graph(path: Path) -> dict[str, Any]:
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WorkflowError(f"{path}: not a readable JSON graph ({exc})") from exc
    if not isinstance(graph, dict) or not all(isinstance(v, dict) for v in graph.values()):
        raise WorkflowError(
            f"{path}: not an API-format graph (node id -> {{class_type, inputs}})",
            hint="export it from ComfyUI with 'Save (API Format)'",
        )
    return graph


def error_text(exc: BaseException) -> str:
    """One line for the job's ``error`` field (hint included, no traceback)."""
    if isinstance(exc, NomadError):
        return f"{exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    return f"{type(exc).__name__}: {exc}"
