"""``POST /prompt`` validation, with real ComfyUI's 400 shapes (nothing is queued on error).

``missing_node_type`` for an unknown class; otherwise ``prompt_outputs_failed_validation``
with per-node errors: ``required_input_missing``, ``bad_linked_input``,
``value_not_in_list`` (a missing model file), ``value_smaller_than_min``,
``custom_validation_failed`` (a LoadImage file that was never uploaded).
"""

from __future__ import annotations

from typing import Any

from nomad.testing.comfy._execution import _Executor, _is_link
from nomad.testing.comfy._specs import NODE_SPECS


def _err(kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


class _Validation(_Executor):
    """What ``/prompt`` checks before queueing."""

    def _validate(self, graph: Any) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
        if not isinstance(graph, dict) or not graph:
            return _err("no_prompt", "No prompt provided", "No prompt provided"), {}, []
        outputs: list[str] = []
        for nid, node in graph.items():
            cls = node.get("class_type") if isinstance(node, dict) else None
            title = (node.get("_meta") or {}).get("title", cls) if isinstance(node, dict) else None
            if cls not in NODE_SPECS:
                label = title or f"ID #{nid}"
                msg = f"Node '{label}' not found. The custom node may not be installed."
                return (
                    _err(
                        "missing_node_type",
                        msg,
                        f"Node ID '#{nid}'",
                        node_id=nid,
                        class_type=cls,
                        node_title=title,
                    ),
                    {},
                    [],
                )
            if NODE_SPECS[cls].output:
                outputs.append(str(nid))
        if not outputs:
            return _err("prompt_no_outputs", "Prompt has no outputs"), {}, []
        node_errors: dict[str, Any] = {}
        for nid, node in graph.items():
            errors = self._node_errors(graph, node)
            if errors:
                node_errors[str(nid)] = {
                    "errors": errors,
                    "class_type": node["class_type"],
                    "dependent_outputs": [
                        o for o in outputs if str(nid) in self._ancestors(graph, o)
                    ],
                }
        if node_errors:  # real 0.28 leaves details empty here: the node errors say it all
            return (
                _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""),
                node_errors,
                [],
            )
        return None, {}, outputs

    def _node_errors(self, graph: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        spec, inputs = NODE_SPECS[node["class_type"]], node.get("inputs") or {}
        errors = []
        for name in spec.required:
            if name not in inputs:
                errors.append(
                    _err(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
        for name, value in inputs.items():
            if _is_link(value) and str(value[0]) not in graph:
                errors.append(
                    _err(
                        "bad_linked_input",
                        "Bad linked input, node does not exist",
                        f"{name}: {value}",
                        input_name=name,
                    )
                )
        for name, folder in spec.models.items():
            value = inputs.get(name)
            if (
                self.models is not None
                and isinstance(value, str)
                and value not in self.models.get(folder, [])
            ):
                options = self.models.get(folder, [])
                errors.append(
                    _err(
                        "value_not_in_list",
                        "Value not in list",
                        f"{name}: {value!r} not in {options}",
                        input_name=name,
                        input_config=[options, {}],  # real: [options, {"tooltip": …}]
                        received_value=value,
                    )
                )
        for name, low in spec.minimum.items():
            value = inputs.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < low:
                errors.append(
                    _err(
                        "value_smaller_than_min",
                        f"Value {value} smaller than min of {low}",
                        f"{name}",
                        input_name=name,
                        received_value=value,
                    )
                )
        if node["class_type"] == "LoadImage":
            image = inputs.get("image")
            if isinstance(image, str) and image not in self.uploads:
                errors.append(
                    _err(
                        "custom_validation_failed",
                        "Custom validation failed for node",
                        f"image - Invalid image file: {image}",
                        input_name="image",
                    )
                )
        return errors
