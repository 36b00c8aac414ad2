"""Workflows checked against what a ComfyUI server says it has (``/object_info``).

The binding check (``Workflow.problems``) only knows the graph. This one
knows the server: node classes, input names, combo choices (model files
included) and ranges — everything ``POST /prompt`` would refuse on a paid
GPU. ``object_info`` comes from a live server (``--endpoint``) or a saved
``GET /object_info`` (``--object-info FILE``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from nomad.comfy._object_info import GraphProblem, check_graph
from nomad.errors import UsageError, WorkflowError
from nomad.workflows._library import Workflow


def load_object_info(
    *, endpoint: str | None = None, path: Path | None = None, proxy: str | None = None
) -> dict[str, Any]:
    """``/object_info`` from a server or a saved file (exactly one of them)."""
    if (endpoint is None) == (path is None):
        raise UsageError("give exactly one of --endpoint URL or --object-info FILE")
    if path is not None:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise UsageError(f"{path}: not JSON ({exc})") from None
        if not isinstance(info, dict) or not all(isinstance(v, dict) for v in info.values()):
            raise UsageError(
                f"{path}: not an /object_info document (class name -> {{input, output…}})",
                hint="save one with: curl http://HOST:8188/object_info > object_info.json",
            )
        return info
    assert endpoint is not None
    return asyncio.run(_fetch(endpoint, proxy))


async def _fetch(endpoint: str, proxy: str | None) -> dict[str, Any]:
    from nomad.comfy.client import ComfyClient

    async with ComfyClient(endpoint, proxy=proxy) as client:
        return await client.object_info()


def server_problems(
    wf: Workflow, object_info: dict[str, Any], *, check_models: bool = True
) -> list[str]:
    """Problems of ``wf`` on that server: its default-bound graph, and each param's bounds.

    A param whose bounds reach past the server's (``max: 4096`` where the
    node allows 2048) is a problem too: some values it accepts would only
    fail on the GPU.
    """
    try:
        graph = wf.bind(
            {}, images={n: b"" for n, p in wf.params.items() if p.type == "image"}
        ).graph
    except WorkflowError as exc:
        return [f"binding: {exc.message}"]
    out = [str(p) for p in check_graph(graph, object_info, check_models=check_models)]
    out += _bound_problems(wf, object_info)
    return out


def _bound_problems(wf: Workflow, info: dict[str, Any]) -> list[str]:
    out = []
    for name, spec in wf.params.items():
        for node, input_name in spec.targets:
            opts = _input_opts(wf.graph, node, input_name, info)
            low, high = opts.get("min"), opts.get("max")
            if isinstance(low, int | float) and (spec.min is None or spec.min < low):
                out.append(
                    f"param {name}: allows {spec.min if spec.min is not None else '-∞'} but "
                    f"node {node} input {input_name} needs at least {low}"
                )
            if isinstance(high, int | float) and (spec.max is None or spec.max > high):
                out.append(
                    f"param {name}: allows {spec.max if spec.max is not None else '∞'} but "
                    f"node {node} input {input_name} takes at most {high}"
                )
    return out


def _input_opts(
    graph: dict[str, Any], node: str, name: str, info: dict[str, Any]
) -> dict[str, Any]:
    cls = (graph.get(node) or {}).get("class_type")
    spec = info.get(str(cls)) or {}
    declared = spec.get("input") or {}
    decl = (declared.get("required") or {}).get(name) or (declared.get("optional") or {}).get(name)
    if isinstance(decl, list) and len(decl) > 1 and isinstance(decl[1], dict):
        return decl[1]
    return {}


def graph_problems(
    graph: Any, object_info: dict[str, Any], *, check_models: bool = True
) -> list[GraphProblem]:
    """:func:`nomad.comfy.check_graph` re-exported for workflow users."""
    return check_graph(graph, object_info, check_models=check_models)
