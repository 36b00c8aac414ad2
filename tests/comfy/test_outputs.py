"""Results are `type: output` items only; temp previews and media types as real ComfyUI reports them.

Reference: a real ComfyUI 0.28 reports PreviewImage files as ``type: temp`` beside
SaveImage's ``type: output`` (shared/notes/comfyui-protocol.md); FakeComfy, the
protocol double used here, does the same.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from nomad.comfy import ComfyClient, media_type, output_kind
from nomad.testing.cli import run_nomad
from nomad.testing.comfy import FakeComfy, png_text

from .conftest import preview_graph, write_preview_workflow


async def test_preview_plus_save_batch_two_gives_two_outputs() -> None:
    """PreviewImage + SaveImage on a batch of 2: exactly the 2 saved files, the 2 temps as previews."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(preview_graph(batch=2), timeout=30)
    assert [(o.node, o.type, o.kind, o.media_type) for o in result.outputs] == [
        ("2", "output", "image", "image/png")
    ] * 2
    assert [(p.node, p.type) for p in result.previews] == [("3", "temp")] * 2
    assert len({o.data for o in result.outputs}) == 2


async def test_output_png_carries_the_prompt_and_workflow_chunks() -> None:
    """Like ComfyUI, a saved PNG holds the API graph (tEXt prompt) and the UI workflow (tEXt workflow)."""
    graph = preview_graph(batch=1)
    async with FakeComfy() as fc:
        async with ComfyClient(fc.url) as client:
            result = await client.run(graph, timeout=30)
        chunks = png_text(result.outputs[0].data)
    assert json.loads(chunks["prompt"]) == graph
    assert "workflow" not in chunks  # only when the client sends extra_pnginfo.workflow


def _vhs_graph(save_output: bool) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 4, "color": 0},
        },
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 16,
                "loop_count": 0,
                "filename_prefix": "wan",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": save_output,
            },
        },
        "3": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {"images": ["1", 0], "filename_prefix": "anim", "fps": 8},
        },
    }


async def test_video_outputs_have_the_right_media_type() -> None:
    """VHS_VideoCombine ("gifs" + format) is a video/mp4; SaveAnimatedWEBP (animated) a video in image/webp."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(_vhs_graph(save_output=True), timeout=30)
    got = sorted((o.node, o.kind, o.media_type, o.extension) for o in result.outputs)
    assert got == [("2", "video", "video/mp4", "mp4"), ("3", "video", "image/webp", "webp")]


async def test_vhs_with_save_output_off_is_only_a_preview() -> None:
    """VHS_VideoCombine with save_output=false writes a temp file: not a result."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(_vhs_graph(save_output=False), timeout=30)
    assert [o.node for o in result.outputs] == ["3"]
    assert [(p.node, p.type) for p in result.previews] == [("2", "temp")]


def test_media_type_and_kind_from_format_or_extension() -> None:
    """A node's format wins over the extension's family; gif and animated webp are videos."""
    assert media_type("a.mp4", "video/h264-mp4") == "video/mp4"
    assert media_type("a.webm", "video/webm") == "video/webm"
    assert media_type("a.gif", "image/gif") == "image/gif"
    assert media_type("a.bin", "video/h265-mp4") == "video/mp4"
    assert media_type("a.flac") == "audio/flac"
    assert output_kind("a.gif") == "video" and output_kind("a.webp", animated=True) == "video"
    assert output_kind("a.webp") == "image" and output_kind("a.flac") == "audio"


def test_nomad_run_saves_exactly_the_two_outputs(tmp_path: Path) -> None:
    """`nomad run` of a PreviewImage + SaveImage (batch 2) binding saves 2 files, not 4."""
    binding = write_preview_workflow(tmp_path / "wf")
    fc = FakeComfy.start_in_thread()
    try:
        code, out, err = run_nomad(
            tmp_path / "data", "run", str(binding), "--endpoint", fc.url,
            "--out", str(tmp_path / "o"), "--json",
        )  # fmt: skip
    finally:
        fc.stop()
    assert code == 0, err
    paths = json.loads(out)["outputs"]
    assert len(paths) == 2 and sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(
        Path(p).name for p in paths
    )
    assert any(k[0] == "temp" for k in fc.files)  # the double did write the previews


@pytest.mark.integration
async def test_serve_stores_exactly_two_outputs_in_s3(tmp_path: Path, stack: Any) -> None:
    """Through a serve worker into real S3 (SeaweedFS): 2 objects for the job, no preview copies."""
    from nomad.queue import JobStatus, open_queue
    from nomad.serve.outputs import S3Outputs
    from nomad.serve.runner import ComfyRunner
    from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
    from nomad.storage import Storage
    from nomad.testing.wait import eventually_async

    storage = Storage(stack.s3_settings(f"out-{uuid.uuid4().hex[:10]}"))
    storage.ensure_bucket()
    store = S3Outputs(storage)
    write_preview_workflow(tmp_path / "wf")
    queue = open_queue(None, tmp_path, lease_seconds=30)
    cfg = PoolConfig(lease_seconds=30, heartbeat_seconds=0.05, idle_poll_seconds=0.05)
    runner = ComfyRunner(store, workflow_dirs=(tmp_path / "wf",))
    pool = WorkerPool(queue, runner, store, config=cfg)
    async with FakeComfy() as fc:
        job = queue.enqueue("preview_and_save", {"batch": 2})
        pool.start_cluster(ClusterRuntime("c", [fc.url], gpu="fake"))
        await eventually_async(
            lambda: asyncio.to_thread(lambda: queue.get(job.id).status.finished),
            timeout=30, interval=0.02, what="the job to finish",
        )  # fmt: skip
        await pool.shutdown(1.0)
    done = queue.get(job.id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.outputs == [f"outputs/{job.id}/0.png", f"outputs/{job.id}/1.png"]
    listed = sorted(storage.list(f"outputs/{job.id}/"))
    assert listed == done.outputs
    assert all(storage.get_bytes(k).startswith(b"\x89PNG") for k in listed)
    queue.close()
