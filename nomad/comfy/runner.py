"""Run a bound workflow against one endpoint and save its outputs: `nomad run` and bench use it.

Kept out of the CLI so the bot, the batch runner and tests can call it too.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nomad.errors import UsageError

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

if TYPE_CHECKING:
    from nomad.comfy._types import RunResult
    from nomad.comfy.client import EventHandler
    from nomad.workflows import BoundWorkflow


@dataclass(frozen=True)
class RunSummary:
    """What one run produced: where the files went, how long each phase took, with what values."""

    workflow: str
    endpoint: str
    prompt_id: str
    params: dict[str, Any]
    timings: dict[str, float]
    paths: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow,
            "endpoint": self.endpoint,
            "prompt_id": self.prompt_id,
            "params": self.params,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "outputs": [str(p) for p in self.paths],
        }


def resolve_endpoint(explicit: str | None, data_dir: Path) -> str:
    """``--endpoint`` if given, else the first endpoint of the running cluster (``nomad status``)."""
    if explicit:
        if not explicit.startswith(("http://", "https://")):
            raise UsageError(f"--endpoint must be an http(s):// URL, not {explicit!r}")
        return explicit.rstrip("/")
    try:
        from nomad.backends.state import current_endpoints
    except ImportError:
        endpoints: list[str] = []
    else:
        endpoints = current_endpoints(data_dir)
    if not endpoints:
        raise UsageError(
            "no running cluster; pass --endpoint",
            hint="start one with `nomad up`, or pass --endpoint http://HOST:PORT",
        )
    return endpoints[0]


def save_outputs(
    result: RunResult, out_dir: Path, stem: str, *, strip_metadata: bool = False
) -> list[Path]:
    """Write each output as ``STEM-N.ext`` in ``out_dir`` (never overwriting an existing file).

    ``strip_metadata`` (privacy): the bytes written carry no prompt/workflow text chunks.
    """
    if strip_metadata:
        from nomad.privacy.metadata import strip
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    for index, output in enumerate(result.outputs):
        ext = output.extension or "bin"
        path = out_dir / f"{safe}-{index}.{ext}"
        n = 1
        while path.exists():
            path = out_dir / f"{safe}-{index}.{n}.{ext}"
            n += 1
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_bytes(strip(output.data, path.name) if strip_metadata else output.data)
        tmp.replace(path)  # a crash never leaves half a file under the final name
        paths.append(path)
    return paths


async def run_bound(
    endpoint: str,
    bound: BoundWorkflow,
    *,
    out_dir: Path | None = None,
    on_event: EventHandler | None = None,
    proxy: str | None = None,
    timeout: float | None = None,
    strip_metadata: bool = False,
) -> tuple[RunSummary, RunResult]:
    """Run ``bound`` on ``endpoint``; save outputs to ``out_dir`` when given."""
    from nomad.comfy.client import ComfyClient

    async with ComfyClient(endpoint, proxy=proxy) as client:
        result = await client.run(
            bound.graph, inputs=bound.inputs, on_event=on_event, timeout=timeout
        )
    paths: list[Path] = []
    if out_dir is not None:
        seed = bound.params.get("seed")
        stem = f"{bound.name}-{seed}" if seed is not None else bound.name
        paths = save_outputs(result, out_dir, stem, strip_metadata=strip_metadata)
    summary = RunSummary(
        bound.name, endpoint, result.prompt_id, dict(bound.params), dict(result.timings), paths
    )
    return summary, result


class StoppedBySignal(Exception):
    """``nomad run`` got SIGTERM/SIGHUP; its prompt was dropped from ComfyUI before exiting."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def run_until_signal(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, but SIGTERM/SIGHUP cancel it like Ctrl-C does.

    Cancelling ``ComfyClient.run`` deletes its prompt from ComfyUI's queue
    and interrupts it (bounded), so a killed ``nomad run`` never leaves a
    GPU busy. Raises :class:`StoppedBySignal` after that clean-up.
    """

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        got: list[int] = []

        def stop(signum: int) -> None:
            got.append(signum)
            task.cancel()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await task
        except asyncio.CancelledError:
            if got:
                raise StoppedBySignal(got[0]) from None
            raise
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
