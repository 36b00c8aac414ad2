"""``nomad workflows import``: a saved UI workflow → API graph + a binding skeleton.

The graph comes from :mod:`nomad.workflows.convert` (subgraphs flattened,
widgets named through ``/object_info``). The skeleton guesses the usual
parameters from the graph — prompt and negative (text encoders feeding a
sampler's positive/negative), seed, steps, cfg, width/height/batch (latent
nodes), input images (LoadImage) — with bounds taken from the server's
schema, and lists the model files from the template's ``properties.models``
(with their download URLs). It is a starting point to edit, and it is
checked before it is written: binding against graph, graph against the
server's schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nomad.errors import UsageError
from nomad.workflows._library import graph_models, load_workflow_file
from nomad.workflows._server import server_problems
from nomad.workflows.convert import convert, model_entries

_TEXT_INPUTS = ("text", "prompt", "clip_l", "t5xxl")
_VIDEO_NODES = ("SaveVideo", "VHS_VideoCombine", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM")


@dataclass
class Imported:
    """What an import produced: where it wrote, and what is still wrong (to show the user)."""

    name: str
    graph_path: Path
    binding_path: Path
    params: list[str]
    models: list[str]
    problems: list[str] = field(default_factory=list)


def import_ui_workflow(
    ui_path: Path,
    object_info: dict[str, Any],
    out_dir: Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> Imported:
    """Convert ``ui_path``, write ``NAME.json`` + ``NAME.yaml`` in ``out_dir``, check both."""
    try:
        ui = json.loads(ui_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {ui_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{ui_path}: not JSON ({exc})") from None
    if not isinstance(ui, dict):
        raise UsageError(f"{ui_path}: not a ComfyUI workflow (a JSON object with 'nodes')")
    name = name or _slug(ui_path.stem)
    graph = convert(ui, object_info)
    binding = skeleton(name, graph, object_info, ui)
    graph_path, binding_path = out_dir / f"{name}.json", out_dir / f"{name}.yaml"
    for path in (graph_path, binding_path):
        if path.exists() and not overwrite:
            raise UsageError(f"{path} exists", hint="pass --force to overwrite, or --name NEW")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(graph_path, json.dumps(graph, indent=2, ensure_ascii=False) + "\n")
    header = f"# Imported from {ui_path.name} by `nomad workflows import`; edit to taste.\n"
    _write(binding_path, header + yaml.safe_dump(binding, sort_keys=False, allow_unicode=True))
    wf = load_workflow_file(binding_path)
    problems = wf.problems() + server_problems(wf, object_info, check_models=False)
    models = [f"{m.folder}/{m.file}" for m in wf.models]
    return Imported(name, graph_path, binding_path, list(wf.params), models, problems)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)  # never half a file under the final name


def _slug(stem: str) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "_", stem.lower()).strip("_.-")
    return slug[:63] or "imported"


def skeleton(
    name: str, graph: dict[str, Any], info: dict[str, Any], ui: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A binding document (the YAML's content) for ``graph``."""
    params: dict[str, Any] = {}
    samplers = [n for n, v in graph.items() if "Sampler" in str(v.get("class_type"))]
    _text_params(graph, samplers, params)
    for nid in samplers:
        _number(params, "seed", graph, info, nid, ("seed", "noise_seed"), help="noise seed")
        _number(params, "steps", graph, info, nid, ("steps",), help="sampler steps")
        _number(params, "cfg", graph, info, nid, ("cfg",), help="guidance scale")
    for nid, node in graph.items():
        if "Latent" in str(node.get("class_type")):
            for key, param in (("width", "width"), ("height", "height"), ("batch_size", "batch")):
                _number(params, param, graph, info, nid, (key,))
    images = [n for n, v in graph.items() if v.get("class_type") == "LoadImage"]
    for i, nid in enumerate(images):
        params[f"image{i + 1 if i else ''}"] = {
            "type": "image", "node": nid, "input": "image", "help": "input image",
        }  # fmt: skip
    output = (
        "video" if any(v.get("class_type") in _VIDEO_NODES for v in graph.values()) else "image"
    )
    return {
        "name": name,
        "title": str((ui or {}).get("extra", {}).get("title", "") or name),
        "output": output,
        "params": params,
        "models": _models(graph, ui or {}),
    }


def _text_params(graph: dict[str, Any], samplers: list[str], params: dict[str, Any]) -> None:
    """``prompt`` (and ``negative``): the text encoders linked to a sampler's positive/negative."""
    for role, param in (("positive", "prompt"), ("negative", "negative")):
        for nid in samplers:
            link = (graph[nid].get("inputs") or {}).get(role)
            if not (isinstance(link, list) and len(link) == 2):
                continue
            targets = _text_targets(graph, str(link[0]))
            if targets and param not in params:
                (node, key), *more = targets
                entry: dict[str, Any] = {"type": "str", "node": node, "input": key}
                entry["default"] = graph[node]["inputs"][key]
                if more:
                    entry["also"] = [list(t) for t in more]
                entry["help"] = "what to draw" if role == "positive" else "what to avoid"
                params[param] = entry


def _text_targets(graph: dict[str, Any], nid: str, depth: int = 0) -> list[tuple[str, str]]:
    """Literal text inputs of ``nid``, or of the encoder behind a conditioning pass-through."""
    node = graph.get(nid) or {}
    inputs = node.get("inputs") or {}
    found = [(nid, k) for k in _TEXT_INPUTS if isinstance(inputs.get(k), str)]
    if found or depth > 4:
        return found
    link = inputs.get("conditioning")
    if isinstance(link, list) and len(link) == 2 and "ZeroOut" not in str(node.get("class_type")):
        return _text_targets(graph, str(link[0]), depth + 1)
    return []


def _number(
    params: dict[str, Any],
    param: str,
    graph: dict[str, Any],
    info: dict[str, Any],
    nid: str,
    keys: tuple[str, ...],
    help: str = "",
) -> None:
    inputs = graph[nid].get("inputs") or {}
    key = next((k for k in keys if k in inputs), None)
    if key is None:
        return
    value = inputs[key]
    if not isinstance(value, int | float) or isinstance(value, bool):
        return  # linked (a Primitive/switch drives it): bind that node by hand
    if param in params:
        first = params[param]
        if first.get("default") == value or param == "seed":
            first.setdefault("also", []).append([nid, key])
        return
    decl = _decl(info, str(graph[nid].get("class_type")), key)
    kind = "int" if decl[0] == "INT" or (isinstance(value, int) and decl[0] != "FLOAT") else "float"
    entry: dict[str, Any] = {"type": kind, "node": nid, "input": key}
    if param != "seed":
        entry["default"] = value
    for bound in ("min", "max"):
        if isinstance(decl[1].get(bound), int | float):
            entry[bound] = decl[1][bound]
    if help:
        entry["help"] = help
    params[param] = entry


def _decl(info: dict[str, Any], cls: str, key: str) -> tuple[Any, dict[str, Any]]:
    declared = (info.get(cls) or {}).get("input") or {}
    decl = (declared.get("required") or {}).get(key) or (declared.get("optional") or {}).get(key)
    if isinstance(decl, list) and decl:
        opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
        return decl[0], opts
    return None, {}


def _models(graph: dict[str, Any], ui: dict[str, Any]) -> list[dict[str, Any]]:
    """The graph's model files, with URLs from the template's ``properties.models`` when given."""
    urls = {str(m.get("name")): m for m in model_entries(ui)}
    out, seen = [], set()
    for folder, file in graph_models(graph):
        if (folder, file) in seen:
            continue
        seen.add((folder, file))
        entry: dict[str, Any] = {"folder": folder, "file": file}
        url = (urls.get(file) or {}).get("url")
        if url:
            entry["url"] = url
        out.append(entry)
    return out
