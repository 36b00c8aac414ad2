"""Translate ComfyUI's error bodies into nomad's error tree, one readable line each."""

from __future__ import annotations

from typing import Any

from nomad.errors import ComfyConnectionError, ComfyError, ComfyValidationError

MODEL_INPUTS = frozenset(
    {
        "ckpt_name",
        "unet_name",
        "clip_name",
        "clip_name1",
        "clip_name2",
        "clip_name3",
        "clip_name4",
        "vae_name",
        "lora_name",
        "control_net_name",
        "model_name",
        "style_model_name",
    }
)


class MissingModelError(ComfyValidationError):
    """A loader node names a model file ComfyUI does not have (``value_not_in_list``)."""

    def __init__(
        self,
        message: str,
        *,
        model: str,
        node: str,
        class_type: str,
        input_name: str,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.model, self.node, self.class_type, self.input_name = (
            model,
            node,
            class_type,
            input_name,
        )


class ComfyTimeout(ComfyConnectionError):
    """A prompt did not finish within its timeout (ComfyUI may still be running it)."""


def _problem(node: str, class_type: str, err: dict[str, Any]) -> ComfyValidationError:
    extra = err.get("extra_info") or {}
    name = extra.get("input_name") or ""
    kind = err.get("type", "")
    if kind == "value_not_in_list" and (name in MODEL_INPUTS or name.endswith("_name")):
        model = str(extra.get("received_value", "?"))
        return MissingModelError(
            f"ComfyUI is missing model file {model!r} (node {node} {class_type}, input {name})",
            model=model,
            node=node,
            class_type=class_type,
            input_name=name,
            hint="bake it into the image (nomad build) or fix the workflow's model list",
        )
    where = f"node {node} ({class_type})" + (f", input {name!r}" if name else "")
    text = err.get("message", kind)
    details = err.get("details")
    if details and details != name:
        text = f"{text}: {details}"
    return ComfyValidationError(
        f"ComfyUI rejected the prompt: {where}: {text} [{kind}]",
        hint="fix the value (see `nomad workflows show NAME`) and retry",
    )


def validation_error(body: Any) -> ComfyValidationError:
    """Turn a /prompt 400 body into one error; the first node error decides the message.

    The full body stays on ``exc.body`` and every node problem on ``exc.problems``.
    """
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    node_errors = body.get("node_errors") if isinstance(body.get("node_errors"), dict) else {}
    problems: list[ComfyValidationError] = []
    for node, entry in node_errors.items():
        for err in entry.get("errors", []):
            problems.append(_problem(str(node), str(entry.get("class_type", "?")), err))
    missing = [p for p in problems if isinstance(p, MissingModelError)]
    exc: ComfyValidationError
    if len(missing) > 1:
        exc = missing[0]
        names = ", ".join(f"{m.model} (node {m.node} {m.class_type})" for m in missing)
        exc.message = f"ComfyUI is missing {len(missing)} model files: {names}"
        exc.args = (exc.message,)
    elif problems:
        exc = missing[0] if missing else problems[0]
    else:
        exc = _top_level(error)
    others = len(problems) - max(len(missing), 1)
    if others > 0:
        exc.message += f" (and {others} more problem(s))"
        exc.args = (exc.message,)
    if missing:
        exc.models = [m.model for m in missing]  # type: ignore[attr-defined]
    exc.body = body  # type: ignore[attr-defined]
    exc.problems = problems  # type: ignore[attr-defined]
    return exc


def _top_level(error: dict[str, Any]) -> ComfyValidationError:
    kind = error.get("type", "unknown")
    extra = error.get("extra_info") or {}
    if kind == "missing_node_type":
        return ComfyValidationError(
            f"ComfyUI has no node class {extra.get('class_type')!r} (node {extra.get('node_id')})",
            hint="install the custom node in the image, or use a workflow made of built-in nodes",
        )
    message = error.get("message", "validation failed")
    details = error.get("details")
    return ComfyValidationError(
        f"ComfyUI rejected the prompt: {message}"
        + (f": {details}" if details else "")
        + f" [{kind}]"
    )


def execution_error(data: dict[str, Any]) -> ComfyError:
    """Turn an ``execution_error`` message into a readable error naming the node."""
    from nomad.errors import ComfyExecutionError

    node, cls = data.get("node_id"), data.get("node_type")
    text = f"{data.get('exception_type', 'Error')}: {data.get('exception_message', '').strip()}"
    exc = ComfyExecutionError(
        f"ComfyUI failed in node {node} ({cls}): {text}", hint="see ComfyUI's log for the traceback"
    )
    exc.data = data  # type: ignore[attr-defined]
    return exc
