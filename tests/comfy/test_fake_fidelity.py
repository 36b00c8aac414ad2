"""FakeComfy replays the message sequences RECORDED from a real ComfyUI 0.28 (tests/comfy/traces/real-0.28-*.json).

Each trace's ``source`` names the ComfyUI commit, torch build, flags, date and the
random-weight checkpoint it was recorded with (on CPU). The tests run the same graphs,
in the same order, against FakeComfy and compare what a client sees: the JSON frame
types in order with their node ids, cached-node sets, progress values, item types
(output vs temp), queue counts, the history entry and the /prompt 400 bodies.
Binary preview frames are left out: the recorded server ran with the default
``--preview-method none`` and sent none; FakeComfy sends one per sampler step, as a
server started with a preview method does.
"""

from __future__ import annotations

import asyncio
import json
import struct
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
CHECKPOINTS = {"checkpoints": ["a.safetensors", "b.safetensors"]}  # as on the recording server


def recorded(name: str) -> dict[str, Any]:
    """One recorded trace by scenario name (see its ``source`` for how it was made)."""
    return json.loads((TRACES / f"real-0.28-{name.replace('_', '-')}.json").read_text())


def shape(frames: list[dict[str, Any]]) -> list[str]:
    """JSON frames reduced to what a client relies on; ids and timestamps dropped."""
    out = []
    for frame in frames:
        kind, data = frame.get("type"), frame.get("data") or {}
        if kind is None:  # a binary frame or the recorder's own note
            continue
        s = str(kind)
        if kind in ("executing", "executed"):
            s += f" {data.get('node')}"
        if kind == "executed":
            s += " " + ",".join(i["type"] for i in data["output"].get("images", []))
        if kind == "execution_cached":
            s += " " + ",".join(sorted(data["nodes"]))
        if kind == "progress":
            s += f" {data['node']} {data['value']}/{data['max']}"
        if kind == "progress_state":
            s += " " + ",".join(f"{n}={v['state']}" for n, v in sorted(data["nodes"].items()))
        if kind == "status":
            s += f" {data['status']['exec_info']['queue_remaining']}"
        if kind == "execution_interrupted":
            s += f" {data['node_id']} {data['node_type']} executed={sorted(data['executed'])}"
        out.append(s)
    return out


def history_shape(entry: dict[str, Any]) -> dict[str, Any]:
    """A history entry without ids, timestamps and file names."""
    number, _, graph, extra, outputs = entry["prompt"]
    return {
        "status": [entry["status"]["status_str"], entry["status"]["completed"]],
        "messages": [m[0] for m in entry["status"]["messages"]],
        "prompt": [type(number).__name__, graph, sorted(extra), outputs],
        "outputs": {
            n: [i["type"] for i in o.get("images", [])] for n, o in entry["outputs"].items()
        },
        "meta": sorted(entry["meta"]),
    }


def png_text_keys(data: bytes) -> list[str]:
    """The tEXt/iTXt/zTXt keywords of a PNG, in file order."""
    keys, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        if data[i + 4 : i + 8] in (b"tEXt", b"iTXt", b"zTXt"):
            keys.append(data[i + 8 : i + 8 + n].split(b"\0")[0].decode())
        i += 12 + n
    return keys


async def replay(
    fc: FakeComfy, graph: dict[str, Any], interrupt_at: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Run ``graph`` as the recorder did: socket first, then /prompt, read to the finish marker.

    Returns the frames, the /prompt answer and the history entry; with ``interrupt_at``
    a POST /interrupt goes out when that sampler step's progress arrives.
    """
    cid = uuid.uuid4().hex
    frames: list[dict[str, Any]] = []
    url = f"ws://{fc.host}:{fc.port}/ws?clientId={cid}"
    async with connect(url) as ws, httpx.AsyncClient() as http:
        frames.append(json.loads(await ws.recv()))
        r = await http.post(f"{fc.url}/prompt", json={"prompt": graph, "client_id": cid})
        assert r.status_code == 200, r.text
        pid = r.json()["prompt_id"]
        while True:
            async with asyncio.timeout(60):  # a hang fails the test instead of stalling CI
                msg = await ws.recv()
            if isinstance(msg, bytes):
                continue
            frame = json.loads(msg)
            frames.append(frame)
            data = frame["data"]
            if frame["type"] == "progress" and data["value"] == interrupt_at:
                assert (await http.post(f"{fc.url}/interrupt", json={})).status_code == 200
            if frame["type"] == "executing" and data.get("node") is None:
                break
        history = (await http.get(f"{fc.url}/history/{pid}")).json()[pid]
    return frames, r.json(), history


def assert_like_recorded(
    name: str, got: tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]
) -> None:
    """Frames, /prompt answer keys and history as in the recorded trace ``name``."""
    trace = recorded(name)
    frames, answer, history = got
    assert shape(frames) == shape(trace["ws"]), name
    assert sorted(answer) == sorted(trace["post_prompt"]["body"])
    real_history = next(iter(trace["history"].values()))
    assert history_shape(history) == history_shape(real_history), name


async def test_no_weight_graph_first_run_and_cached_resubmit_as_recorded() -> None:
    """EmptyImage → SaveImage + PreviewImage (batch 2): output vs temp, then a fully cached resubmit."""
    async with FakeComfy() as fc:
        first = await replay(fc, recorded("empty_first_run")["graph"])
        assert_like_recorded("empty_first_run", first)
        assert first[1]["number"] == recorded("empty_first_run")["post_prompt"]["body"]["number"]
        assert_like_recorded("empty_cached_resubmit", await replay(fc, empty_graph()))
        pngs: dict[str, list[str]] = {}
        async with httpx.AsyncClient() as http:
            for out in first[2]["outputs"].values():
                for item in out["images"]:
                    r = await http.get(f"{fc.url}/view", params=item)
                    pngs[f"{item['type']}/{item['filename']}"] = png_text_keys(r.content)
    real = recorded("empty_first_run")["png_text_chunks"]
    assert sorted(k.split("/")[0] for k in pngs) == sorted(k.split("/")[0] for k in real)
    want = {key for chunks in real.values() for _, key in chunks}
    # FakeComfy adds its own "fakecomfy" provenance chunk; everything else as recorded
    assert {k for keys in pngs.values() for k in keys} - {"fakecomfy"} == want == {"prompt"}


def empty_graph() -> dict[str, Any]:
    """The recorded no-weight graph (both empty_* traces ran the same one)."""
    graph: dict[str, Any] = recorded("empty_cached_resubmit")["graph"]
    assert graph == recorded("empty_first_run")["graph"]
    return graph


async def test_txt2img_session_as_recorded_cache_reload_and_interrupt() -> None:
    """The recorded SD1.5 session replayed in order: first run, cached resubmit, another
    checkpoint, back to the first (its loader runs again), then /interrupt at step 2 of 20."""
    async with FakeComfy(models=CHECKPOINTS) as fc:
        for name in ("t2i_first_run", "t2i_cached_resubmit", "t2i_other_checkpoint"):
            assert_like_recorded(name, await replay(fc, recorded(name)["graph"]))
        assert fc.loads == ["checkpoints/a.safetensors", "checkpoints/b.safetensors"]
        back = recorded("t2i_back_to_first_checkpoint")
        assert_like_recorded(back["name"], await replay(fc, back["graph"]))
        assert fc.loads[-1] == "checkpoints/a.safetensors"  # reloaded inside execution
        fc.hold_at_step = 2  # step 2 waits for the interrupt, so the race is deterministic
        trace = recorded("t2i_interrupt")
        assert any(f.get("client_action", "").startswith("POST /interrupt") for f in trace["ws"])
        assert_like_recorded("t2i_interrupt", await replay(fc, trace["graph"], interrupt_at=2))


async def test_validation_errors_answer_the_recorded_400_bodies() -> None:
    """Unknown class, missing input, missing checkpoint: the same 400 body as real ComfyUI."""
    async with FakeComfy(models=CHECKPOINTS) as fc, httpx.AsyncClient() as http:
        for name in (
            "invalid_unknown_class",
            "invalid_missing_input",
            "invalid_missing_checkpoint",
        ):
            trace = recorded(name)
            r = await http.post(
                f"{fc.url}/prompt", json={"prompt": trace["graph"], "client_id": "c"}
            )
            assert r.status_code == trace["post_prompt"]["status"] == 400
            assert _without_tooltips(r.json()) == _without_tooltips(trace["post_prompt"]["body"])
        assert fc.prompts == []  # nothing was queued


def _without_tooltips(body: dict[str, Any]) -> dict[str, Any]:
    """``input_config`` reduced to its options: real ComfyUI adds the node's tooltip text."""
    for entry in body["node_errors"].values():
        for err in entry["errors"]:
            if "input_config" in err["extra_info"]:
                err["extra_info"]["input_config"] = err["extra_info"]["input_config"][0]
    return body


async def test_interrupt_lands_at_the_next_sampler_step() -> None:
    """Held at step 2 of 4, /interrupt ends the prompt before step 3; history as recorded."""
    real = next(iter(recorded("t2i_interrupt")["history"].values()))
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
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in real["status"]["messages"]]
    assert [entry["status"]["status_str"], entry["status"]["completed"]] == ["error", False]


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
    """A, A (cached, no load), B, A: A's checkpoint loads again after B (recorded: t2i-back-to-first-checkpoint)."""
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
