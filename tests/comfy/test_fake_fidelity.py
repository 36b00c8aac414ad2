"""FakeComfy follows the real ComfyUI 0.28 behaviour recorded in tests/comfy/traces/ (see each file's source)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from nomad.comfy import ComfyClient, ComfyEvent
from nomad.errors import ComfyInterrupted
from nomad.testing.comfy import FakeComfy

from .conftest import t2i_graph

TRACES = Path(__file__).parent / "traces"


def trace(name: str) -> dict[str, Any]:
    return json.loads((TRACES / f"comfyui-0.28-{name}.json").read_text())


async def frames_of_one_prompt(fc: FakeComfy, graph: dict[str, Any]) -> list[list[Any]]:
    """Queue ``graph`` with a socket open; every JSON frame about it until the finish marker."""
    cid = uuid.uuid4().hex
    out: list[list[Any]] = []
    async with connect(f"ws://{fc.host}:{fc.port}/ws?clientId={cid}") as ws:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{fc.url}/prompt", json={"prompt": graph, "client_id": cid})
            assert r.status_code == 200
        while True:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                continue
            frame = json.loads(msg)
            out.append([frame["type"], frame["data"]])
            if frame["type"] == "executing" and frame["data"].get("node") is None:
                return out


def shape(frames: list[list[Any]], ignore: list[str]) -> list[list[Any]]:
    """Frames reduced to what the traces assert: type, node, cached nodes, item types."""
    shaped = []
    for kind, data in frames:
        if kind in ignore:
            continue
        keep: dict[str, Any] = {}
        if kind in ("executing", "executed"):
            keep["node"] = data.get("node")
        if kind == "execution_cached":
            keep["nodes"] = sorted(data.get("nodes", []))
        if kind == "executed":
            keep["types"] = [i["type"] for i in data["output"].get("images", [])]
        shaped.append([kind, keep])
    return shaped


def assert_matches(got: list[list[Any]], expected: dict[str, Any]) -> None:
    """Same frames; within the execution block the real executor's node order may differ."""
    want = expected["ws"]
    free = set(expected.get("order_free", []))
    assert [k for k, _ in got if k not in free] == [k for k, _ in want if k not in free]
    body = sorted(json.dumps(f) for f in got if f[0] in free)
    assert body == sorted(json.dumps(f) for f in want if f[0] in free)
    for kind, data in got:  # a node's executed comes after its executing
        if kind == "executed" and ["executing", {"node": data["node"]}] in got:
            assert got.index(["executing", {"node": data["node"]}]) < got.index([kind, data])


async def test_first_run_and_cached_resubmit_match_the_real_traces() -> None:
    """PreviewImage + SaveImage: temp vs output items, then a fully cached resubmit."""
    first, again = trace("preview_and_save_first_run"), trace("preview_and_save_cached_resubmit")
    async with FakeComfy() as fc:
        got_first = shape(await frames_of_one_prompt(fc, first["graph"]), first["ignore"])
        got_again = shape(await frames_of_one_prompt(fc, again["graph"]), again["ignore"])
        history = list(fc.history.values())
    assert_matches(got_first, first)
    assert_matches(got_again, again)
    assert [m[0] for m in history[0]["status"]["messages"]] == first["history_messages"]
    assert [m[0] for m in history[1]["status"]["messages"]] == again["history_messages"]


async def test_interrupt_lands_at_the_next_sampler_step() -> None:
    """Held at step 2 of 4, /interrupt ends the prompt before step 3; history as on real ComfyUI."""
    expected = trace("interrupt_at_sampler_step")["history_messages"]
    steps: list[int] = []

    async def on_event(ev: ComfyEvent) -> None:
        if ev.type == "progress" and ev.value is not None:
            steps.append(ev.value)
            if ev.value == 2:
                async with httpx.AsyncClient() as http:
                    await http.post(f"{fc.url}/interrupt", json={})

    async with FakeComfy(hold_at_step=2, hold_timeout=600) as fc, ComfyClient(fc.url) as client:
        try:
            await client.run(t2i_graph(steps=4), on_event=on_event, timeout=60)
        except ComfyInterrupted as exc:
            assert "node 31 (KSampler)" in str(exc)
        else:
            raise AssertionError("the prompt was not interrupted")
        (entry,) = fc.history.values()
    assert steps == [1, 2]
    assert [m[0] for m in entry["status"]["messages"]] == expected


def _ckpt_graph(ckpt: str, seed: int = 1) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0], "seed": seed, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                "scheduler": "simple", "positive": ["2", 0], "negative": ["2", 0],
                "latent_image": ["3", 0], "denoise": 1.0,
            },
        },
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "c"}},
    }  # fmt: skip


async def test_cache_keeps_only_the_last_prompt_so_alternating_reloads() -> None:
    """A, A (cached, no load), B, A: A's checkpoint is loaded again after B, as on ComfyUI 0.28."""
    async with FakeComfy() as fc, ComfyClient(fc.url) as client:
        await client.run(_ckpt_graph("a.safetensors"), timeout=30)
        again = await client.run(_ckpt_graph("a.safetensors", seed=2), timeout=30)
        await client.run(_ckpt_graph("b.safetensors"), timeout=30)
        await client.run(_ckpt_graph("a.safetensors"), timeout=30)
    assert "1" in again.cached_nodes
    assert fc.loads == [
        "checkpoints/a.safetensors",
        "checkpoints/b.safetensors",
        "checkpoints/a.safetensors",
    ]


async def test_model_load_happens_inside_execution() -> None:
    """The loader node executes after execution_start (not before the prompt starts), with load_delay."""
    events: list[tuple[str, str | None]] = []
    async with FakeComfy(load_delay=0.01) as fc, ComfyClient(fc.url) as client:
        await client.run(
            _ckpt_graph("a.safetensors"), on_event=lambda ev: events.append((ev.type, ev.node))
        )
    assert events.index(("execution_start", None)) < events.index(("executing", "1"))
    assert events.index(("executing", "1")) < events.index(("executing", "4"))
    assert fc.loads == ["checkpoints/a.safetensors"]
