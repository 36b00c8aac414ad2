"""Find, load, bind and validate workflows (API-format graph + binding file)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nomad.errors import WorkflowError
from nomad.workflows._spec import BindingFile, ModelReq, ParamSpec

# loader class -> {input name: model folder}; used to check a binding's model list
LOADERS: dict[str, dict[str, str]] = {
    "UNETLoader": {"unet_name": "diffusion_models"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3)},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "ImageOnlyCheckpointLoader": {"ckpt_name": "checkpoints"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    "StyleModelLoader": {"style_model_name": "style_models"},
}
_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
_SEED_MAX = 2**48  # random seeds stay JSON- and JS-safe


def builtin_dir() -> Path:
    """The built-in workflows (the repo's ``workflows/``, shipped as package data)."""
    from nomad.resources import workflows_dir

    return workflows_dir()


@dataclass(frozen=True)
class WorkflowInfo:
    """A row of ``nomad workflows list``; ``error`` is set when the files don't load."""

    name: str
    title: str
    output_kind: str
    path: Path
    params: list[str] = field(default_factory=list)
    models: int = 0
    error: str | None = None


@dataclass(frozen=True)
class BoundWorkflow:
    """A workflow with values applied: ready for ``ComfyClient.run(graph, inputs=inputs)``."""

    workflow: Workflow
    graph: dict[str, Any]
    params: dict[str, Any]
    inputs: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.workflow.name


@dataclass
class Workflow:
    """An API-format graph plus its binding (named parameters and model requirements)."""

    name: str
    title: str
    graph: dict[str, Any]
    params: dict[str, ParamSpec]
    models: list[ModelReq]
    output_kind: str
    path: Path | None = None
    template: str | None = None
    description: str = ""

    # ------------------------------------------------------------------ binding
    def bind(
        self,
        values: Mapping[str, str | int | float | bool] | None = None,
        images: Mapping[str, bytes] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> BoundWorkflow:
        """Apply ``values`` (CLI strings or typed) and ``images``; defaults fill the rest.

        Unknown names and out-of-bound values raise :class:`WorkflowError`
        naming the parameter and what is allowed. An unset seed becomes a
        random one, recorded in ``params`` so the run can be repeated.
        """
        values, images = dict(values or {}), dict(images or {})
        self._check_names(values, images)
        typed: dict[str, Any] = {}
        for name, spec in self.params.items():
            if spec.type in ("image", "aspect"):
                continue
            if name in values:
                typed[name] = spec.coerce(values[name], name=name, workflow=self.name)
            elif spec.default is not None:
                typed[name] = spec.coerce(spec.default, name=name, workflow=self.name)
            elif name == "seed" or name.endswith("_seed"):
                typed[name] = (rng or random.SystemRandom()).randrange(0, _SEED_MAX)
        self._apply_aspects(values, typed)
        graph = copy.deepcopy(self.graph)
        for name, value in typed.items():
            for node, input_name in self.params[name].targets:
                graph[node]["inputs"][input_name] = value
        inputs = self._bind_images(graph, images, typed)
        return BoundWorkflow(self, graph, typed, inputs)

    def _check_names(self, values: Mapping[str, Any], images: Mapping[str, bytes]) -> None:
        known = ", ".join(sorted(n for n, p in self.params.items() if p.type != "image")) or "none"
        for key in values:
            if key not in self.params or self.params[key].type == "image":
                raise WorkflowError(
                    f"{self.name}: unknown parameter {key!r} (known: {known})",
                    hint=f"see `nomad workflows show {self.name}`",
                )
        image_params = [n for n, p in self.params.items() if p.type == "image"]
        for key in images:
            if key not in image_params:
                raise WorkflowError(
                    f"{self.name}: takes no image {key!r} "
                    f"(image inputs: {', '.join(image_params) or 'none'})"
                )

    def _apply_aspects(self, values: Mapping[str, Any], typed: dict[str, Any]) -> None:
        for name, spec in self.params.items():
            if spec.type != "aspect" or (name not in values and spec.default is None):
                continue
            wname, hname = spec.sets
            explicit = [k for k in (wname, hname) if k in values]
            if name in values and explicit:
                raise WorkflowError(
                    f"{self.name}: set either {name} or {'/'.join(explicit)}, not both"
                )
            if name not in values and explicit:
                continue
            ratio = spec.coerce(values.get(name, spec.default), name=name, workflow=self.name)
            wspec, hspec = self.params[wname], self.params[hname]
            area = float(wspec.default) * float(hspec.default)
            w, h = _aspect_size(str(ratio), area, name=name, workflow=self.name)
            typed[wname] = wspec.coerce(w, name=wname, workflow=self.name)
            typed[hname] = hspec.coerce(h, name=hname, workflow=self.name)
            typed[name] = ratio

    def _bind_images(
        self, graph: dict[str, Any], images: Mapping[str, bytes], typed: dict[str, Any]
    ) -> dict[str, bytes]:
        inputs: dict[str, bytes] = {}
        for name, spec in self.params.items():
            if spec.type != "image":
                continue
            data = images.get(name)
            if data is None:
                raise WorkflowError(
                    f"{self.name} needs an input image ({name})", hint="pass --image PATH"
                )
            filename = f"nomad-{hashlib.sha256(data).hexdigest()[:16]}.{_image_ext(data)}"
            for node, input_name in spec.targets:
                graph[node]["inputs"][input_name] = filename
            inputs[filename] = data
            typed[name] = filename
        return inputs

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check the binding against the graph; raise one WorkflowError listing every problem."""
        problems = self.problems()
        if problems:
            raise WorkflowError(
                f"workflow {self.name} is inconsistent: " + "; ".join(problems),
                hint="fix the binding file (node ids and input names come from the graph)",
            )

    def problems(self) -> list[str]:
        """Every inconsistency between binding and graph (empty when valid)."""
        out = []
        for name, spec in self.params.items():
            for node, input_name in spec.targets:
                if node not in self.graph:
                    out.append(f"param {name}: node {node!r} is not in the graph")
                elif input_name not in (self.graph[node].get("inputs") or {}):
                    cls = self.graph[node].get("class_type")
                    out.append(f"param {name}: node {node} ({cls}) has no input {input_name!r}")
            for other in spec.sets:
                if other not in self.params:
                    out.append(f"param {name}: sets unknown param {other!r}")
        used = {(_norm(f), m) for f, m in graph_models(self.graph)}
        listed = {(_norm(m.folder), m.file) for m in self.models}
        out += [
            f"graph loads {f}/{m} but `models:` does not list it" for f, m in sorted(used - listed)
        ]
        out += [
            f"`models:` lists {f}/{m} but no loader node uses it" for f, m in sorted(listed - used)
        ]
        if self.output_kind not in ("image", "video"):
            out.append(f"output must be image or video, not {self.output_kind!r}")
        return out

    def info(self) -> WorkflowInfo:
        return WorkflowInfo(
            self.name,
            self.title,
            self.output_kind,
            self.path or Path(),
            list(self.params),
            len(self.models),
        )


def graph_models(graph: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(folder, file) of every model the graph's loader nodes reference."""
    out = []
    for node in graph.values():
        for input_name, folder in LOADERS.get(node.get("class_type", ""), {}).items():
            value = (node.get("inputs") or {}).get(input_name)
            if isinstance(value, str):
                out.append((folder, value))
    return out


def _norm(folder: str) -> str:
    return _ALIASES.get(folder, folder)


def _aspect_size(ratio: str, area: float, *, name: str, workflow: str) -> tuple[int, int]:
    try:
        a, b = (float(x) for x in ratio.split(":"))
        if a <= 0 or b <= 0:
            raise ValueError
    except ValueError:
        raise WorkflowError(f"{workflow}: {name}={ratio!r} is not a ratio like 16:9") from None
    width = math.sqrt(area * a / b)
    return _round16(width), _round16(width * b / a)


def _round16(x: float) -> int:
    return max(16, round(x / 16.0) * 16)


def _image_ext(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "png"


# ---------------------------------------------------------------------- loading
def load_workflow_file(path: str | Path) -> Workflow:
    """Load one binding file (YAML) and the API-format graph it names."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"cannot read workflow binding {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise WorkflowError(f"{path}: not valid YAML: {exc}") from exc
    try:
        binding = BindingFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise WorkflowError(
            f"{path}: {where}: {first['msg']}", hint="see docs/workflows.md for the binding format"
        ) from exc
    graph_path = path.with_name(binding.graph or f"{path.stem}.json")
    graph = _read_graph(graph_path)
    return Workflow(
        binding.name,
        binding.title or binding.name,
        graph,
        dict(binding.params),
        list(binding.models),
        binding.output,
        path,
        binding.template,
        binding.description,
    )


def read_graph(path: str | Path) -> dict[str, Any]:
    """Read an API-format graph file, refusing anything ``/prompt`` could only reject.

    Not JSON, a JSON list or scalar, an empty object, a UI-format workflow
    (``nodes``/``links``), nodes without ``class_type``: each is one
    WorkflowError naming the file, before a job is queued or a GPU woken.
    """
    path = Path(path)
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkflowError(f"cannot read workflow graph {path}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise WorkflowError(f"{path}: not a JSON graph (binary data)") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if isinstance(graph, dict) and "nodes" in graph:
        raise WorkflowError(
            f"{path}: a UI-format workflow, not an API-format graph",
            hint="convert it with `nomad workflows import FILE --endpoint URL`, "
            "or export with 'Export (API)' in ComfyUI",
        )
    if not isinstance(graph, dict):
        raise WorkflowError(
            f"{path}: a JSON {type(graph).__name__}, not an API-format graph "
            "(an object: node id -> {class_type, inputs})",
            hint="export with 'Export (API)' in ComfyUI",
        )
    if not graph:
        raise WorkflowError(f"{path}: the graph has no nodes")
    bad = [k for k, v in graph.items() if not isinstance(v, dict) or "class_type" not in v]
    if bad:
        raise WorkflowError(f"{path}: node(s) {', '.join(bad[:5])} have no class_type")
    return graph


_read_graph = read_graph


def _binding_files(extra_dirs: Iterable[str | Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in [builtin_dir(), *(Path(d) for d in extra_dirs)]:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            found[path.stem] = path  # later dirs override built-ins of the same name
    return found


def list_workflows(extra_dirs: Iterable[str | Path] = ()) -> list[WorkflowInfo]:
    """Every workflow in the built-in folder and ``extra_dirs`` (broken ones carry ``error``)."""
    rows = []
    for stem, path in sorted(_binding_files(extra_dirs).items()):
        try:
            wf = load_workflow_file(path)
            problems = wf.problems()
            row = wf.info()
            if problems:
                row = WorkflowInfo(
                    row.name,
                    row.title,
                    row.output_kind,
                    path,
                    row.params,
                    row.models,
                    "; ".join(problems),
                )
        except WorkflowError as exc:
            row = WorkflowInfo(stem, stem, "?", path, error=exc.message)
        rows.append(row)
    return rows


def load_workflow(name: str, extra_dirs: Iterable[str | Path] = ()) -> Workflow:
    """Load a workflow by name (or a path to its binding file); an unknown name lists the known ones."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_workflow_file(name)
    files = _binding_files(extra_dirs)
    path = files.get(name)
    if path is None:
        for candidate in files.values():  # binding `name:` may differ from the file stem
            if candidate.stem != name and _declared_name(candidate) == name:
                path = candidate
                break
    if path is None:
        known = ", ".join(sorted(files)) or "none"
        raise WorkflowError(
            f"unknown workflow {name!r} (known: {known})",
            hint="add one with an API-format JSON + binding YAML in workflows.dirs",
        )
    return load_workflow_file(path)


def _declared_name(path: Path) -> str | None:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return raw.get("name") if isinstance(raw, dict) else None


def required_models(workflows: Iterable[Workflow]) -> list[ModelReq]:
    """The union of model files several workflows need (deduplicated by dest), for builds."""
    seen: dict[str, ModelReq] = {}
    for wf in workflows:
        for model in wf.models:
            seen.setdefault(f"{_norm(model.folder)}/{model.file}", model)
    return list(seen.values())
