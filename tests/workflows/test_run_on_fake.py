"""The bound built-in workflows run end to end on FakeComfy (the protocol double)."""

from __future__ import annotations

import hashlib
import json

import pytest

from nomad.comfy import ComfyClient, ComfyEvent
from nomad.testing.comfy import FakeComfy, png_text
from nomad.workflows import load_workflow

PNG = b"\x89PNG\r\n\x1a\n" + b"photo-bytes"


@pytest.mark.parametrize(
    "name", ["flux_dev", "flux_schnell", "qwen_image_edit", "sd35_large", "wan22_t2v"]
)
async def test_builtin_runs_on_double(name: str) -> None:
    """Each workflow validates on the double, reports sampler steps and yields its output kind."""
    wf = load_workflow(name)
    bound = wf.bind({"seed": "11"}, {"image": PNG} if "image" in wf.params else None)
    steps: list[int] = []

    def on_event(event: ComfyEvent) -> None:
        if event.type == "progress" and event.value is not None:
            steps.append(event.value)

    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(bound.graph, inputs=bound.inputs, on_event=on_event, timeout=30)
    assert [o.kind for o in result.outputs] == [wf.output_kind]
    assert steps and steps[0] == 1
    if wf.output_kind == "image":
        meta = json.loads(png_text(result.outputs[0].data)["fakecomfy"])
        assert 11 in json.loads(meta["seeds"])
        if bound.inputs:
            assert json.loads(meta["source_sha256"]) == [hashlib.sha256(PNG).hexdigest()]


async def test_lightning_steps_follow_the_switch() -> None:
    """Qwen's steps come through a switch: Lightning on → 4 progress steps, off → 20."""
    wf = load_workflow("qwen_image_edit")
    counts = []
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        for lightning in ("true", "false"):
            bound = wf.bind({"seed": "1", "lightning": lightning}, {"image": PNG})
            maxima: list[int] = []
            await client.run(
                bound.graph,
                inputs=bound.inputs,
                timeout=30,
                on_event=lambda e, m=maxima: m.append(e.max) if e.type == "progress" else None,
            )
            counts.append(maxima[-1])
    assert counts == [4, 20]
