"""Check an API-format graph against a ComfyUI server's ``/object_info`` before queueing it.

``/object_info`` is the server's own schema: every node class with its
required/optional inputs, their types, ranges and combo choices (model file
names included, so a missing weight shows up as a value not in the list).
Checking a graph against it finds, without spending a GPU-minute, what
``POST /prompt`` would refuse — and a little more: an input the class does
not have (ComfyUI silently ignores it, so a binding typo would do nothing).

Each problem is one line naming node, class and input. Shapes handled: the
classic ``[[choices], {opts}]`` combo, the newer ``["COMBO", {"options": […]}]``,
``INT``/``FLOAT`` with ``min``/``max``, ``STRING``, ``BOOLEAN``, dynamic-combo
sub-inputs (``format.bit_depth``) and links (source node, output slot, type).
Upload combos (LoadImage's file list) are not checked: nomad uploads those
files at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_MODEL_EXT = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")
_UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "upload")


@dataclass(frozen=True)
class GraphProblem:
    """One thing ``/prompt`` would refuse (or silently ignore), located by node and input."""

    node: str
    class_type: str | None
    input: str | None
    kind: str  # unknown_class, unknown_input, missing_input, missing_model, not_in_list, ...
    message: str

    def __str__(self) -> str:
        where = f"node {self.node}" + (f" ({self.class_type})" if self.class_type else "")
        if self.input:
            where += f" input {self.input}"
        return f"{where}: {self.message}"


_Make = Callable[[str, str], GraphProblem]


def check_graph(
    graph: Any, object_info: dict[str, Any], *, check_models: bool = True
) -> list[GraphProblem]:
    """Every problem of ``graph`` against ``object_info`` (empty when ComfyUI would accept it).

    ``check_models=False`` skips model-file choices: for a graph checked
    against a server that does not hold the weights yet (they are baked in
    by ``nomad build``).
    """
    if not isinstance(graph, dict) or not graph:
        return [GraphProblem("-", None, None, "no_prompt", "the graph is empty or not an object")]
    problems: list[GraphProblem] = []
    for nid, node in graph.items():
        problems += _check_node(str(nid), node, graph, object_info, check_models)
    if not any(
        (object_info.get(str((n or {}).get("class_type"))) or {}).get("output_node")
        for n in graph.values()
        if isinstance(n, dict)
    ) and not any(p.kind == "unknown_class" for p in problems):
        problems.append(
            GraphProblem("-", None, None, "no_outputs", "the graph has no output node (SaveImage…)")
        )
    return problems


def _check_node(
    nid: str, node: Any, graph: dict[str, Any], info: dict[str, Any], check_models: bool
) -> list[GraphProblem]:
    if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
        return [GraphProblem(nid, None, None, "bad_node", "not a node (needs class_type, inputs)")]
    cls = node["class_type"]
    spec = info.get(cls)
    if not isinstance(spec, dict):
        return [
            GraphProblem(
                nid, cls, None, "unknown_class",
                "unknown node class on this ComfyUI (a custom node not installed?)",
            )
        ]  # fmt: skip
    declared = spec.get("input") or {}
    required = dict(declared.get("required") or {})
    optional = dict(declared.get("optional") or {})
    inputs = node.get("inputs") or {}
    out = []
    for name in required:
        if name not in inputs and not any(k.startswith(f"{name}.") for k in inputs):
            out.append(GraphProblem(nid, cls, name, "missing_input", "required input is missing"))
    known = {**required, **optional}
    for name, value in inputs.items():
        base = name.split(".", 1)[0]
        if name not in known and base not in known:
            hint = ", ".join(sorted(known)) or "none"
            out.append(
                GraphProblem(
                    nid, cls, name, "unknown_input",
                    f"{cls} has no input {name!r} (it has: {hint})",
                )
            )  # fmt: skip
            continue
        if name not in known:
            continue  # a dynamic combo's or autogrow's sub-input: its schema sits inside
        problem = _check_value(nid, cls, name, value, known[name], graph, info, check_models)
        if problem is not None:
            out.append(problem)
    return out


def _check_value(
    nid: str,
    cls: str,
    name: str,
    value: Any,
    decl: Any,
    graph: dict[str, Any],
    info: dict[str, Any],
    check_models: bool,
) -> GraphProblem | None:
    kind, opts = _decl(decl)

    def problem(code: str, message: str) -> GraphProblem:
        return GraphProblem(nid, cls, name, code, message)

    if _is_link(value):
        return _check_link(value, kind, graph, info, problem)
    if kind == "COMFY_DYNAMICCOMBO_V3":
        keys = [o.get("key") for o in opts.get("options") or [] if isinstance(o, dict)]
        return _check_choice(value, keys, check_models, problem)
    if isinstance(kind, str) and kind.endswith("_V3"):
        return None  # other structural V3 inputs (autogrow): their parts are checked as given
    if isinstance(kind, list):
        if any(opts.get(flag) for flag in _UPLOAD_FLAGS):
            return None  # the file list of an upload widget: nomad uploads at run time
        return _check_choice(value, kind, check_models, problem)
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return _check_range(value, opts, problem)
            return problem("wrong_type", f"{value!r} is not an integer")
        return _check_range(value, opts, problem)
    if kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return problem("wrong_type", f"{value!r} is not a number")
        return _check_range(value, opts, problem)
    if kind == "STRING" and not isinstance(value, str):
        return problem("wrong_type", f"{value!r} is not a string")
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return problem("wrong_type", f"{value!r} is not true/false")
    if isinstance(kind, str) and kind not in _LITERAL_TYPES:
        return problem("needs_link", f"needs a link from a {kind} output, got {value!r}")
    return None


_LITERAL_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "*"}


def _decl(decl: Any) -> tuple[Any, dict[str, Any]]:
    """(type or choice list, options) from an input declaration, old or new combo shape."""
    if not isinstance(decl, list | tuple) or not decl:
        return None, {}
    kind = decl[0]
    opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
    if kind == "COMBO" and isinstance(opts.get("options"), list):
        kind = list(opts["options"])
    return kind, opts


def _check_choice(
    value: Any, choices: list[Any], check_models: bool, problem: _Make
) -> GraphProblem | None:
    if value in choices:
        return None
    is_model = isinstance(value, str) and value.lower().endswith(_MODEL_EXT)
    if is_model and not check_models:
        return None
    shown = ", ".join(repr(c) for c in choices[:8]) + (" …" if len(choices) > 8 else "")
    if is_model:
        where = f"has: {shown}" if choices else "its models folder is empty"
        return problem("missing_model", f"model file {value!r} is not on this ComfyUI ({where})")
    return problem("not_in_list", f"{value!r} is not one of: {shown or 'nothing'}")


def _check_range(value: int | float, opts: dict[str, Any], problem: _Make) -> GraphProblem | None:
    low, high = opts.get("min"), opts.get("max")
    if isinstance(low, int | float) and value < low:
        return problem("out_of_range", f"{value} is below the minimum {low}")
    if isinstance(high, int | float) and value > high:
        return problem("out_of_range", f"{value} is above the maximum {high}")
    return None


def _check_link(
    value: list[Any], kind: Any, graph: dict[str, Any], info: dict[str, Any], problem: _Make
) -> GraphProblem | None:
    src_id, slot = str(value[0]), value[1]
    src = graph.get(src_id)
    if not isinstance(src, dict):
        return problem("bad_link", f"links to node {src_id}, which is not in the graph")
    src_spec = info.get(str(src.get("class_type")))
    if not isinstance(src_spec, dict) or not isinstance(src_spec.get("output"), list):
        return None  # unknown class: reported on the source itself; no outputs listed: a subset
    outputs = list(src_spec.get("output") or [])
    if not 0 <= slot < len(outputs):
        return problem(
            "bad_link",
            f"links to output {slot} of node {src_id} ({src['class_type']}), "
            f"which has {len(outputs)} output(s)",
        )
    produced = outputs[slot]
    if isinstance(kind, str) and isinstance(produced, str) and not _compatible(produced, kind):
        return problem(
            "type_mismatch",
            f"expects {kind} but node {src_id} ({src['class_type']}) output {slot} is {produced}",
        )
    return None


def _compatible(produced: str, wanted: str) -> bool:
    if "*" in (produced, wanted) or wanted == "COMBO" or produced == "COMBO":
        return True
    return bool(set(produced.split(",")) & set(wanted.split(",")))


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )
