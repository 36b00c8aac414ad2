"""ComfyClient against FakeComfy, the ComfyUI protocol double (not real ComfyUI)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest

from nomad.comfy import ComfyClient, ComfyEvent, MissingModelError
from nomad.errors import (
    ComfyConnectionError,
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyValidationError,
)
from nomad.testing.comfy import FakeComfy, png_text
from nomad.testing.wait import eventually_async

from .conftest import edit_graph, t2i_graph, video_graph

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_text_to_image_outputs_events_and_timings(t2i: dict[str, Any]) -> None:
    """A t2i run returns the saved PNG, sampler progress in order, previews and timings."""
    events: list[ComfyEvent] = []
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(t2i, on_event=events.append, timeout=30)
    assert [o.kind for o in result.outputs] == ["image"]
    out = result.outputs[0]
    assert out.node == "9" and out.data.startswith(PNG_MAGIC) and out.filename.endswith(".png")
    assert json.loads(json.loads(png_text(out.data)["fakecomfy"])["seeds"]) == [7]
    steps = [(e.value, e.max) for e in events if e.type == "progress"]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(e.class_type == "KSampler" for e in events if e.type == "progress")
    assert [e.fraction for e in events if e.type == "progress"][-1] == 1.0
    assert any(e.type == "preview" and e.image and e.image.startswith(PNG_MAGIC) for e in events)
    assert {"31", "9"} <= {e.node for e in events if e.type == "executing"}
    assert set(result.timings) == {
        "upload", "queue_wait", "execution", "model_load", "inference", "download", "total"
    }
    assert result.history["status"]["status_str"] == "success"


async def test_async_event_handler_and_cached_resubmit(t2i: dict[str, Any]) -> None:
    """An async on_event is awaited; a resubmit reports cached nodes and the same output."""
    seen: list[str] = []

    async def handler(event: ComfyEvent) -> None:
        seen.append(event.type)

    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        first = await client.run(t2i, on_event=handler, timeout=30)
        second = await client.run(t2i, timeout=30)
    assert "execution_start" in seen and "executed" in seen
    assert "31" in second.cached_nodes
    assert second.outputs[0].data == first.outputs[0].data


async def test_seed_changes_output() -> None:
    """Outputs derive from the inputs: another seed gives other bytes."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        a = await client.run(t2i_graph(seed=1), timeout=30)
        b = await client.run(t2i_graph(seed=2), timeout=30)
    assert a.outputs[0].data != b.outputs[0].data


async def test_image_edit_uploads_input_and_rewrites_graph() -> None:
    """`inputs` are uploaded, LoadImage rewritten, and the output derives from the upload."""
    source = PNG_MAGIC + b"not-really-a-photo"
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        fc.uploads["cat.png"] = b"an older, different file"
        result = await client.run(edit_graph("cat.png"), inputs={"cat.png": source}, timeout=30)
        sent = fc.prompts[-1]
    assert fc.uploads["cat.png"] == source  # overwrite=true replaced the stale file
    assert sent["1"]["inputs"]["image"] == "cat.png"
    meta = json.loads(png_text(result.outputs[0].data)["fakecomfy"])
    assert json.loads(meta["source_sha256"]) == [hashlib.sha256(source).hexdigest()]
    assert result.timings["upload"] >= 0


async def test_upload_without_overwrite_is_renamed() -> None:
    """Without overwrite a same-named different file gets ComfyUI's `x (1).png` name."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        first = await client.upload_image("x.png", b"one", overwrite=False)
        second = await client.upload_image("x.png", b"two", overwrite=False)
    assert (first, second) == ("x.png", "x (1).png")


async def test_video_output_kind() -> None:
    """A SaveVideo graph yields one mp4-shaped output classified as video."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        result = await client.run(video_graph(), timeout=30)
    (out,) = result.outputs
    assert out.kind == "video" and out.extension == "mp4" and out.subfolder == "video"
    assert out.data[4:8] == b"ftyp"


async def test_missing_model_names_the_file(t2i: dict[str, Any]) -> None:
    """A model the server lacks is a MissingModelError naming file, node, class and input."""
    models = {
        "diffusion_models": [],
        "text_encoders": ["clip_l.safetensors", "t5xxl_fp16.safetensors"],
        "vae": ["ae.safetensors"],
    }
    async with FakeComfy(models=models) as fc, ComfyClient(fc.url) as client:
        with pytest.raises(MissingModelError) as info:
            await client.run(t2i, timeout=30)
        assert fc.prompts == []  # nothing queued
    exc = info.value
    assert (exc.model, exc.node, exc.class_type, exc.input_name) == (
        "flux1-schnell.safetensors",
        "38",
        "UNETLoader",
        "unet_name",
    )
    assert "flux1-schnell.safetensors" in str(exc) and "\n" not in str(exc)


async def test_missing_input_error_is_one_readable_line(t2i: dict[str, Any]) -> None:
    """required_input_missing names node id, class and input in one line."""
    del t2i["31"]["inputs"]["steps"]
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        with pytest.raises(ComfyValidationError) as info:
            await client.run(t2i, timeout=30)
    msg = str(info.value)
    assert "node 31 (KSampler)" in msg and "'steps'" in msg and "required_input_missing" in msg
    assert "\n" not in msg


async def test_unknown_node_class(t2i: dict[str, Any]) -> None:
    """missing_node_type names the class and node."""
    t2i["9"]["class_type"] = "SaveImageWebsocket"
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        with pytest.raises(
            ComfyValidationError, match=r"no node class 'SaveImageWebsocket' \(node 9"
        ):
            await client.run(t2i, timeout=30)


async def test_invalid_prompt_id_rejected(t2i: dict[str, Any]) -> None:
    """A non-canonical prompt_id is a validation error (invalid_prompt_id)."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        with pytest.raises(ComfyValidationError, match="invalid_prompt_id"):
            await client.queue_prompt(t2i, "cid", prompt_id="NOT-A-UUID")


async def test_execution_error_names_node(t2i: dict[str, Any]) -> None:
    """execution_error becomes ComfyExecutionError naming the failing node and class."""
    async with FakeComfy(fail_at_node="8") as fc, ComfyClient(fc.url) as client:
        with pytest.raises(ComfyExecutionError, match=r"node 8 \(VAEDecode\)"):
            await client.run(t2i, timeout=30)


async def test_server_dies_mid_run_raises_connection_error(t2i: dict[str, Any]) -> None:
    """If the server dies mid-run the client raises ComfyConnectionError instead of hanging."""
    async with FakeComfy(die_at_node="8") as fc:
        async with ComfyClient(fc.url, poll_interval=0.2) as client:
            with pytest.raises(ComfyConnectionError, match="went away"):
                await client.run(t2i, timeout=30)
        assert fc.dead


async def test_socket_drop_history_completes(t2i: dict[str, Any]) -> None:
    """If /ws drops mid-run but the prompt completes, the result comes from /history."""
    async with FakeComfy(drop_ws_at_node="8") as fc, ComfyClient(fc.url, poll_interval=0.2) as c:
        result = await c.run(t2i, timeout=30)
    assert [o.filename for o in result.outputs] == ["ComfyUI_00001_.png"]
    assert result.outputs[0].data.startswith(PNG_MAGIC)


async def test_interrupt_stops_the_run(t2i: dict[str, Any]) -> None:
    """Interrupting during sampling raises ComfyInterrupted; history records the interruption."""
    async with FakeComfy(hold_at_step=2) as fc, ComfyClient(fc.url) as client:

        async def on_event(event: ComfyEvent) -> None:
            if event.type == "progress" and event.value == 2:
                await client.interrupt(event.prompt_id)

        with pytest.raises(ComfyInterrupted, match="node 31"):
            await client.run(t2i, on_event=on_event, timeout=30)
        (entry,) = fc.history.values()
    assert entry["status"]["status_str"] == "error"
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"


async def test_queue_inspect_and_clear(t2i: dict[str, Any]) -> None:
    """queue() shows running and pending prompts; clear_queue() drops pending only."""
    async with FakeComfy(hold_at_step=1) as fc, ComfyClient(fc.url) as client:
        first = await client.queue_prompt(t2i, "cid")
        second = await client.queue_prompt(t2i_graph(seed=99), "cid")
        queue = await client.queue()
        await client.clear_queue()
        after = await client.queue()
        fc.release()
        await eventually_async(lambda: client.history(first), timeout=10, what="the released job's history")
    assert [row[1] for row in queue["queue_pending"]] == [second]
    assert after["queue_pending"] == []
    assert fc.history[first]["status"]["status_str"] == "success"
    assert second not in fc.history


async def test_health_reports_gpu_and_vram() -> None:
    """health() parses the GPU name and VRAM out of /system_stats."""
    async with (
        FakeComfy(gpu_name="NVIDIA GeForce RTX 5090", vram_gb=32) as fc,
        ComfyClient(fc.url) as client,
    ):
        stats = await client.health()
    assert (stats.gpu_name, stats.vram_total_gb, stats.device_type) == (
        "NVIDIA GeForce RTX 5090",
        32.0,
        "cuda",
    )


async def test_unreachable_server_is_connection_error() -> None:
    """A closed port gives ComfyConnectionError with a hint, not an httpx traceback."""
    fc = FakeComfy()
    await fc.start()
    url = fc.url
    await fc.aclose()
    async with ComfyClient(url, timeout=5) as client:
        with pytest.raises(ComfyConnectionError) as info:
            await client.health()
    assert info.value.hint


async def test_view_rejects_traversal_and_origin_is_checked() -> None:
    """The double answers /view `../` with 400, a foreign Origin with 403; the client maps them."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        with pytest.raises(ComfyError, match="HTTP 400"):
            await client.view("../secret.png")
        with pytest.raises(ComfyError, match="HTTP 404"):
            await client.view("nope.png")
        async with httpx.AsyncClient() as raw:
            foreign = await raw.get(
                f"{fc.url}/system_stats", headers={"Origin": "http://evil.test"}
            )
            same = await raw.get(
                f"{fc.url}/api/system_stats", headers={"Origin": f"http://127.0.0.1:{fc.port}"}
            )
    assert (foreign.status_code, same.status_code) == (403, 200)


async def test_injected_transport() -> None:
    """The HTTP client is injectable: an httpx.MockTransport answers /system_stats."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/system_stats"
        return httpx.Response(
            200, json={"devices": [{"name": "cpu", "type": "cpu", "vram_total": 0, "vram_free": 0}]}
        )

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with ComfyClient("http://comfy.invalid", http=http) as client:
        stats = await client.health()
    await http.aclose()
    assert stats.gpu_name == "CPU" and stats.is_cpu and stats.vram_total_gb == 0.0


async def test_all_missing_models_listed_in_one_line(t2i: dict[str, Any]) -> None:
    """When several model files are missing (as real ComfyUI reports them), all are named."""
    async with FakeComfy(models={}) as fc, ComfyClient(fc.url) as client:
        with pytest.raises(MissingModelError) as info:
            await client.run(t2i, timeout=30)
    msg = str(info.value)
    assert msg.startswith("ComfyUI is missing 4 model files: ") and "\n" not in msg
    assert sorted(info.value.models) == sorted(  # type: ignore[attr-defined]
        [
            "flux1-schnell.safetensors",
            "clip_l.safetensors",
            "t5xxl_fp16.safetensors",
            "ae.safetensors",
        ]
    )


async def test_progress_state_around_every_node() -> None:
    """Like real ComfyUI, the double sends progress_state for non-sampler nodes too."""
    events: list[ComfyEvent] = []
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        fc.uploads["a.png"] = b"x"
        await client.run(edit_graph("a.png"), on_event=events.append, timeout=30)
    states = [e for e in events if e.type == "progress_state"]
    assert len(states) == 6  # running + finished for each of the three nodes


async def test_prompt_deleted_from_queue_is_an_error_not_a_hang(t2i: dict[str, Any]) -> None:
    """A prompt removed from the queue by someone else fails the run instead of waiting forever."""
    async with (
        FakeComfy(hold_at_step=1, hold_timeout=10) as fc,
        ComfyClient(fc.url, poll_interval=0.1) as client,
    ):
        first = await client.queue_prompt(t2i, "other-client")
        run = asyncio.create_task(client.run(t2i_graph(seed=5), timeout=30))
        ours: list[str] = []

        async def ours_pending() -> list[str]:
            pending = (await client.queue())["queue_pending"]
            return [row[1] for row in pending if row[1] != first]

        ours = await eventually_async(ours_pending, timeout=10, what="our prompt pending behind the held one")
        await client.delete_from_queue(ours)
        with pytest.raises(ComfyError, match="neither queued nor in the history"):
            await run
        fc.release()
        assert first not in fc.history or fc.history[first]["status"]["completed"]
