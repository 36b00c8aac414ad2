"""The workflow library: the five built-ins load, bind and validate offline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nomad.errors import WorkflowError
from nomad.workflows import (
    graph_models,
    list_workflows,
    load_workflow,
    load_workflow_file,
    required_models,
)

BUILTINS = ["flux_dev", "flux_schnell", "qwen_image_edit", "sd35_large", "wan22_t2v"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def test_builtins_are_listed_without_errors() -> None:
    """All five built-in workflows are listed, with no binding/graph problems."""
    rows = {r.name: r for r in list_workflows()}
    assert sorted(rows) == BUILTINS
    assert [r.error for r in rows.values()] == [None] * 5
    assert rows["wan22_t2v"].output_kind == "video"
    assert rows["flux_schnell"].output_kind == "image"


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_validates_and_models_match_loaders(name: str) -> None:
    """Each workflow validates, and its model list equals the loader nodes' files."""
    wf = load_workflow(name)
    wf.validate()
    assert sorted(graph_models(wf.graph)) == sorted((m.folder, m.file) for m in wf.models)
    assert all(m.url and m.url.startswith("https://") for m in wf.models)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_binds_with_defaults(name: str) -> None:
    """Binding with defaults only (plus an image where needed) sets a recorded seed."""
    wf = load_workflow(name)
    images = {"image": PNG} if "image" in wf.params else None
    bound = wf.bind({}, images, rng=random.Random(1))
    assert isinstance(bound.params["seed"], int)
    seed_spec = wf.params["seed"]
    node, input_name = seed_spec.targets[0]
    assert bound.graph[node]["inputs"][input_name] == bound.params["seed"]
    assert (
        bound.graph is not wf.graph and wf.graph[node]["inputs"][input_name] != bound.params["seed"]
    )


def test_bind_sets_every_target_and_types_values() -> None:
    """CLI strings are typed; a prompt bound to two encoders sets both."""
    wf = load_workflow("flux_schnell")
    bound = wf.bind({"prompt": "a fox", "steps": "6", "guidance": "2.5", "seed": "42"})
    enc = bound.graph["41"]["inputs"]
    assert (enc["clip_l"], enc["t5xxl"], enc["guidance"]) == ("a fox", "a fox", 2.5)
    assert bound.graph["31"]["inputs"]["steps"] == 6 and bound.params["seed"] == 42


def test_unknown_parameter_lists_known_ones() -> None:
    """A wrong parameter name is an error that names it and lists the known ones."""
    with pytest.raises(WorkflowError, match=r"unknown parameter 'stepz' \(known: .*steps"):
        load_workflow("flux_schnell").bind({"stepz": "4"})


@pytest.mark.parametrize(
    ("values", "pattern"),
    [
        ({"steps": "500"}, r"steps=500 is out of range \(allowed 1\.\.12\)"),
        ({"steps": "four"}, r"steps='four' is not a valid int"),
        ({"width": "100"}, r"width=100 is out of range \(allowed 256\.\.2048\)"),
        ({"ar": "5:1"}, r"ar='5:1' is not allowed \(choose one of: 1:1"),
        ({"ar": "16:9", "width": "512"}, r"set either ar or width"),
    ],
)
def test_bad_values_are_clear_errors(values: dict[str, str], pattern: str) -> None:
    """Out-of-range, mistyped and conflicting values name the param and the allowed range."""
    with pytest.raises(WorkflowError, match=pattern):
        load_workflow("flux_schnell").bind(values)


def test_aspect_ratio_maps_to_width_height() -> None:
    """ar=16:9 keeps the default pixel count and rounds to multiples of 16."""
    bound = load_workflow("sd35_large").bind({"ar": "16:9"})
    latent = bound.graph["53"]["inputs"]
    assert (latent["width"], latent["height"]) == (1360, 768)
    assert (bound.params["width"], bound.params["height"], bound.params["ar"]) == (
        1360,
        768,
        "16:9",
    )


def test_image_edit_needs_and_binds_an_image() -> None:
    """qwen_image_edit requires an image; the bound graph names the upload, inputs carry bytes."""
    wf = load_workflow("qwen_image_edit")
    with pytest.raises(WorkflowError, match="needs an input image"):
        wf.bind({"prompt": "snow"})
    bound = wf.bind({"prompt": "snow"}, {"image": PNG})
    (filename,) = bound.inputs
    assert bound.graph["78"]["inputs"]["image"] == filename and bound.inputs[filename] == PNG
    assert bound.graph["433:111"]["inputs"]["prompt"] == "snow"
    with pytest.raises(WorkflowError, match="takes no image 'mask'"):
        wf.bind({}, {"image": PNG, "mask": PNG})


def test_video_params() -> None:
    """wan22_t2v binds seconds/fps/lightning to the primitives feeding the frame count."""
    bound = load_workflow("wan22_t2v").bind({"seconds": "3", "fps": "24", "lightning": "no"})
    g = bound.graph
    assert g["128:126"]["inputs"]["value"] == 3.0 and g["128:125"]["inputs"]["value"] == 24.0
    assert g["128:129"]["inputs"]["value"] is False
    assert bound.workflow.output_kind == "video"


def test_unknown_workflow_lists_known() -> None:
    """An unknown workflow name lists the known ones."""
    with pytest.raises(WorkflowError, match=r"unknown workflow 'flux' \(known: flux_dev, flux_sch"):
        load_workflow("flux")


def _user_workflow(tmp_path: Path, binding: str) -> Path:
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "x.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }
    (tmp_path / "invert.json").write_text(json.dumps(graph))
    (tmp_path / "invert.yaml").write_text(binding)
    return tmp_path / "invert.yaml"


def test_user_workflow_from_extra_dir(tmp_path: Path) -> None:
    """A user folder adds a workflow that loads, validates and binds."""
    _user_workflow(
        tmp_path, "name: invert\nparams:\n  image: {type: image, node: '1', input: image}\n"
    )
    wf = load_workflow("invert", extra_dirs=[tmp_path])
    wf.validate()
    assert "invert" in [r.name for r in list_workflows([tmp_path])]
    assert wf.bind({}, {"image": PNG}).graph["1"]["inputs"]["image"].startswith("nomad-")


def test_binding_referring_to_missing_node_or_input(tmp_path: Path) -> None:
    """validate() names a binding target that does not exist in the graph."""
    path = _user_workflow(
        tmp_path,
        "name: invert\nparams:\n"
        "  a: {type: int, node: '9', input: x}\n"
        "  b: {type: str, node: '3', input: prefix}\n",
    )
    wf = load_workflow_file(path)
    with pytest.raises(WorkflowError) as info:
        wf.validate()
    assert "node '9' is not in the graph" in str(info.value)
    assert "node 3 (SaveImage) has no input 'prefix'" in str(info.value)


def test_model_list_mismatch_is_reported(tmp_path: Path) -> None:
    """A listed model no loader uses (and a loader model not listed) are both reported."""
    graph = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
    }
    (tmp_path / "m.json").write_text(json.dumps(graph))
    (tmp_path / "m.yaml").write_text(
        "name: m\nmodels:\n  - {folder: vae, file: other.safetensors}\n"
    )
    problems = load_workflow_file(tmp_path / "m.yaml").problems()
    assert problems == [
        "graph loads vae/ae.safetensors but `models:` does not list it",
        "`models:` lists vae/other.safetensors but no loader node uses it",
    ]


def test_binding_typo_names_the_key(tmp_path: Path) -> None:
    """An unknown key in a binding file is an error naming where it is."""
    path = _user_workflow(
        tmp_path, "name: invert\nparams:\n  a: {type: int, node: '1', input: image, mim: 3}\n"
    )
    with pytest.raises(WorkflowError, match=r"invert.yaml: params.a.mim: Extra inputs"):
        load_workflow_file(path)


def test_ui_format_graph_is_refused(tmp_path: Path) -> None:
    """A UI-format JSON in place of the graph says how to convert it."""
    (tmp_path / "u.json").write_text(json.dumps({"nodes": [], "links": []}))
    (tmp_path / "u.yaml").write_text("name: u\n")
    with pytest.raises(WorkflowError, match="not an API-format graph") as info:
        load_workflow_file(tmp_path / "u.yaml")
    assert "nomad workflows import" in (info.value.hint or "")


def test_required_models_deduplicates() -> None:
    """Flux schnell + dev share encoders and VAE: the union lists them once."""
    models = required_models([load_workflow("flux_schnell"), load_workflow("flux_dev")])
    dests = sorted(m.dest for m in models)
    assert dests == [
        "diffusion_models/flux1-dev.safetensors",
        "diffusion_models/flux1-schnell.safetensors",
        "text_encoders/clip_l.safetensors",
        "text_encoders/t5xxl_fp16.safetensors",
        "vae/ae.safetensors",
    ]
    assert models[0].as_model_file()["dest"] == models[0].dest


def test_load_by_binding_path(tmp_path: Path) -> None:
    """load_workflow also accepts a path to a binding file (as `nomad run PATH.yaml` does)."""
    path = _user_workflow(tmp_path, "name: invert\n")
    assert load_workflow(str(path)).name == "invert"
