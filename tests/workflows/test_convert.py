"""The UI → API converter reproduces the shipped graphs from the official templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.errors import WorkflowError
from nomad.workflows import builtin_dir
from nomad.workflows.convert import convert, model_entries

DATA = Path(__file__).parent / "data"
TEMPLATES = {
    "flux_schnell": "flux_schnell_full_text_to_image",
    "flux_dev": "flux_dev_full_text_to_image",
    "sd35_large": "sd3.5_simple_example",
    "qwen_image_edit": "image_qwen_image_edit_2509",
    "wan22_t2v": "video_wan2_2_14B_t2v",
}


def _template(name: str) -> dict:
    pkg = pytest.importorskip("comfyui_workflow_templates_json")
    return json.loads((Path(pkg.__file__).parent / "templates" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_converter_reproduces_shipped_graph(name: str) -> None:
    """Converting the official UI template with the committed object_info gives workflows/NAME.json."""
    info = json.loads((DATA / "object_info_subset.json").read_text())
    shipped = json.loads((builtin_dir() / f"{name}.json").read_text())
    assert convert(_template(TEMPLATES[name]), info) == shipped


def test_subgraph_is_flattened_with_prefixed_ids() -> None:
    """Subgraph nodes get '<outer>:<inner>' ids and links through subgraph inputs resolve."""
    info = json.loads((DATA / "object_info_subset.json").read_text())
    graph = convert(_template(TEMPLATES["qwen_image_edit"]), info)
    assert graph["433:117"]["inputs"]["image"] == ["78", 0]  # subgraph input -> outer LoadImage
    assert graph["469"]["inputs"]["images"] == ["433:8", 0]  # subgraph output -> inner VAEDecode
    assert graph["469"]["inputs"]["format.bit_depth"] == "8-bit"  # dynamic combo sub-input
    assert "99" not in graph  # MarkdownNote dropped


def test_widgets_skip_control_after_generate() -> None:
    """KSampler's 'randomize' companion widget is skipped, so steps/cfg land right."""
    info = json.loads((DATA / "object_info_subset.json").read_text())
    ks = convert(_template(TEMPLATES["flux_schnell"]), info)["31"]["inputs"]
    assert (ks["steps"], ks["cfg"], ks["sampler_name"], ks["scheduler"]) == (
        4,
        1,
        "euler",
        "simple",
    )


def test_models_from_properties() -> None:
    """model_entries collects properties.models from subgraph nodes too."""
    names = {m["name"] for m in model_entries(_template(TEMPLATES["wan22_t2v"]))}
    assert "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors" in names and len(names) == 6


def test_unknown_class_and_api_input_are_errors() -> None:
    """A class missing from object_info, or an API-format input, is a WorkflowError."""
    with pytest.raises(WorkflowError, match="not in object_info"):
        convert({"nodes": [{"id": 1, "type": "Mystery", "mode": 0}], "links": []}, {})
    with pytest.raises(WorkflowError, match="not a UI-format workflow"):
        convert({"1": {"class_type": "SaveImage"}}, {})
