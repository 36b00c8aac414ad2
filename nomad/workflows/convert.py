"""Convert a ComfyUI *UI-format* workflow (what the editor saves) to *API format*.

UI workflows keep widget values positionally (``widgets_values``), wire nodes
through a ``links`` table and may wrap parts in subgraphs. API format (what
``/prompt`` takes) names every input. The mapping needs each node class's
input order, which only ComfyUI knows: pass its ``/object_info`` (or the
subset for the classes used).

Rules, matching what the ComfyUI frontend's "Export (API)" does:

- subgraph instances are flattened; inner nodes get ids ``"<outer>:<inner>"``;
- widgets are taken in ``input_order`` order; an INT with
  ``control_after_generate`` and an upload combo carry one extra UI-only value;
  a dynamic combo's chosen option contributes ``"<name>.<sub>"`` inputs;
- links through subgraph inputs/outputs, ``Reroute`` and the legacy
  ``PrimitiveNode`` are resolved to their real source (a link or a literal);
- notes (``Note``, ``MarkdownNote``) and muted/bypassed nodes are dropped.

Used once to produce the graphs in ``workflows/``; kept so users can convert
their own (``python -m nomad.workflows.convert object_info.json ui.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from nomad.errors import WorkflowError

__all__ = ["convert", "model_entries"]

_SKIP = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}
_WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
_SG_INPUT, _SG_OUTPUT = -10, -20


@dataclass
class _Scope:
    """One graph level: the top workflow or one instance of a subgraph."""

    prefix: str
    nodes: dict[int, dict[str, Any]]
    links: dict[int, tuple[int, int, int, int]]  # id -> origin, origin_slot, target, target_slot
    parent: _Scope | None = None
    instance: dict[str, Any] | None = None  # the outer node this scope expands
    definition: dict[str, Any] | None = None

    def api_id(self, node_id: int) -> str:
        return f"{self.prefix}{node_id}"


def _links(raw: list[Any]) -> dict[int, tuple[int, int, int, int]]:
    out = {}
    for link in raw:
        if isinstance(link, dict):
            out[link["id"]] = (
                link["origin_id"],
                link["origin_slot"],
                link["target_id"],
                link["target_slot"],
            )
        else:
            out[link[0]] = (link[1], link[2], link[3], link[4])
    return out


class _Converter:
    def __init__(self, ui: dict[str, Any], object_info: dict[str, Any]) -> None:
        self.info = object_info
        self.subgraphs = {sg["id"]: sg for sg in (ui.get("definitions") or {}).get("subgraphs", [])}
        self.top = _Scope("", {n["id"]: n for n in ui["nodes"]}, _links(ui.get("links", [])))
        self.api: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        self._emit_scope(self.top)
        return self.api

    def _child(self, scope: _Scope, node: dict[str, Any]) -> _Scope:
        sg = self.subgraphs[node["type"]]
        return _Scope(
            f"{scope.prefix}{node['id']}:",
            {n["id"]: n for n in sg["nodes"]},
            _links(sg.get("links", [])),
            scope,
            node,
            sg,
        )

    def _emit_scope(self, scope: _Scope) -> None:
        for node in scope.nodes.values():
            if node.get("mode", 0) in (2, 4) or node["type"] in _SKIP:
                continue
            if node["type"] in self.subgraphs:
                self._emit_scope(self._child(scope, node))
                continue
            self.api[scope.api_id(node["id"])] = self._node(scope, node)

    def _node(self, scope: _Scope, node: dict[str, Any]) -> dict[str, Any]:
        cls = node["type"]
        if cls not in self.info:
            raise WorkflowError(
                f"node {scope.api_id(node['id'])}: class {cls!r} is not in object_info",
                hint="use an object_info from a ComfyUI that has this node",
            )
        inputs = self._widgets(
            cls, list(node.get("widgets_values") or []), scope.api_id(node["id"])
        )
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            source = self._resolve_link(scope, slot["link"])
            if source is not None and source[1] is not None:
                inputs[slot["name"]] = source[1]
        title = node.get("title") or self.info[cls].get("display_name") or cls
        return {"inputs": inputs, "class_type": cls, "_meta": {"title": title}}

    def _widgets(self, cls: str, values: list[Any], where: str) -> dict[str, Any]:
        spec = self.info[cls]
        order = spec.get("input_order") or {k: list(v) for k, v in spec.get("input", {}).items()}
        defs = {**spec["input"].get("required", {}), **spec["input"].get("optional", {})}
        out: dict[str, Any] = {}
        values = list(values)
        for name in [*order.get("required", []), *order.get("optional", [])]:
            kind, opts = defs[name][0], (defs[name][1] if len(defs[name]) > 1 else {}) or {}
            if not values:
                break
            if kind == "COMFY_DYNAMICCOMBO_V3":
                choice = values.pop(0)
                out[name] = choice
                option = next((o for o in opts.get("options", []) if o.get("key") == choice), None)
                for sub in ((option or {}).get("inputs") or {}).get("required", {}):
                    if values:
                        out[f"{name}.{sub}"] = values.pop(0)
                continue
            if not (isinstance(kind, list) or kind in _WIDGET_TYPES) or opts.get("forceInput"):
                continue
            out[name] = values.pop(0)
            if values and (
                opts.get("control_after_generate")
                or opts.get("image_upload")
                or opts.get("video_upload")
            ):
                values.pop(0)  # UI-only companion widget ("randomize", "image" upload button)
        return out

    # -------------------------------------------------------------- link resolution
    def _resolve_link(self, scope: _Scope, link_id: int) -> tuple[str, Any] | None:
        if link_id not in scope.links:
            return None
        origin, slot, _, _ = scope.links[link_id]
        return self._resolve_origin(scope, origin, slot)

    def _resolve_origin(self, scope: _Scope, origin: int, slot: int) -> tuple[str, Any] | None:
        if origin == _SG_INPUT:
            return self._through_subgraph_input(scope, slot)
        node = scope.nodes.get(origin)
        if node is None:
            return None
        if node["type"] in self.subgraphs:
            child = self._child(scope, node)
            assert child.definition is not None
            inner_link = child.definition["outputs"][slot]["linkIds"][0]
            return self._resolve_link(child, inner_link)
        if node["type"] == "PrimitiveNode":
            return ("value", (node.get("widgets_values") or [None])[0])
        if node["type"] == "Reroute":
            link = (node.get("inputs") or [{}])[0].get("link")
            return None if link is None else self._resolve_link(scope, link)
        return ("link", [scope.api_id(origin), slot])

    def _through_subgraph_input(self, scope: _Scope, slot: int) -> tuple[str, Any] | None:
        assert scope.definition is not None and scope.instance is not None and scope.parent
        name = scope.definition["inputs"][slot]["name"]
        outer = next((i for i in scope.instance.get("inputs") or [] if i["name"] == name), None)
        if outer is None or outer.get("link") is None:
            return None  # unconnected outside: the inner widget value stands
        return self._resolve_link(scope.parent, outer["link"])


def convert(ui: dict[str, Any], object_info: dict[str, Any]) -> dict[str, Any]:
    """Return the API-format graph of a UI-format workflow (see the module docstring)."""
    if "nodes" not in ui:
        raise WorkflowError(
            "not a UI-format workflow (no 'nodes' list); API-format needs no conversion"
        )
    return _Converter(ui, object_info).run()


def model_entries(ui: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``properties.models`` entries of every node (subgraphs included), deduplicated."""
    nodes = list(ui.get("nodes", []))
    for sg in (ui.get("definitions") or {}).get("subgraphs", []):
        nodes += sg.get("nodes", [])
    seen: dict[str, dict[str, Any]] = {}
    for node in nodes:
        for model in (node.get("properties") or {}).get("models") or []:
            seen.setdefault(f"{model.get('directory')}/{model.get('name')}", model)
    return list(seen.values())


def main(argv: list[str] | None = None) -> None:
    """CLI: print the API-format graph of a UI workflow."""
    p = argparse.ArgumentParser(prog="python -m nomad.workflows.convert", description=__doc__)
    p.add_argument("object_info", help="JSON from ComfyUI's GET /object_info (or a subset)")
    p.add_argument("workflow", help="UI-format workflow JSON")
    args = p.parse_args(argv)
    with open(args.object_info, encoding="utf-8") as fh:
        info = json.load(fh)
    with open(args.workflow, encoding="utf-8") as fh:
        ui = json.load(fh)
    json.dump(convert(ui, info), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
