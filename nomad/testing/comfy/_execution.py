"""The execution model: walk the graph from its output nodes like ComfyUI's executor.

Recorded on a real ComfyUI 0.28 (tests/comfy/traces/real-0.28-*.json) and
copied here: ``execution_start``, then ``execution_cached`` for nodes whose
outputs the cache still holds, then nodes in the executor's own order, each
``progress_state`` (running; every node so far) / ``executing`` / per sampler
step ``progress_state`` + ``progress`` (+ a binary preview frame, as with a
``--preview-method``; the recorded default sends none) / ``executed`` for
output nodes / ``progress_state`` (finished); a cached output node still
sends ``executed`` + ``progress_state``. Only the previous prompt's shared
nodes stay cached (recorded with 0.28's default RAM-pressure cache: A, B, A
runs A's loader again);
model files are loaded inside execution, by the loader nodes
(``load_delay`` each, recorded in ``loads``); ``/interrupt`` lands at the next
node or sampler step. Files derive from the node inputs, so tests can check
what went in came out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nomad.testing.comfy._faults import _Died, _Failed, _Faults, _Interrupted
from nomad.testing.comfy._files import _video_bytes, png_bytes
from nomad.testing.comfy._specs import NODE_SPECS, NodeSpec
from nomad.testing.comfy._state import _Job


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Executor(_Faults):
    """Runs queued prompts one at a time and records their history."""

    def _ancestors(self, graph: dict[str, Any], nid: str) -> list[str]:
        """Node ids ``nid`` depends on, dependencies first (post-order DFS), ``nid`` last."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen or n not in graph:
                return
            seen.add(n)
            for value in (graph[n].get("inputs") or {}).values():
                if _is_link(value):
                    visit(str(value[0]))
            order.append(n)

        visit(nid)
        return order

    def _run_order(self, graph: dict[str, Any], outputs: list[str], cached: set[str]) -> list[str]:
        """The order ComfyUI 0.28's ExecutionList runs nodes in (comfy_execution/graph.py).

        Nodes are staged from each output by a stack walk that skips cached
        inputs; of the ready nodes the first output node goes first, then one
        feeding an output, then one two links from an output, else the first
        staged. Recorded: the txt2img trace runs 1, 4, 3, 2, 5, … not 1, 2, 3.
        """
        pending: dict[str, None] = {}
        count: dict[str, int] = {}
        blocking: dict[str, dict[str, None]] = {}

        def add(nid: str) -> None:
            stack, links = [nid], []
            while stack:
                n = stack.pop()
                if n in pending:
                    continue
                pending[n], count[n], blocking[n] = None, 0, {}
                for value in (graph[n].get("inputs") or {}).values():
                    if _is_link(value) and str(value[0]) in graph:
                        if str(value[0]) not in cached:
                            stack.append(str(value[0]))
                        links.append((str(value[0]), n))
            for src, to in links:
                if src not in cached:
                    add(src)
                    if to not in blocking[src]:
                        blocking[src][to] = None
                        count[to] += 1

        def is_output(n: str) -> bool:
            return bool(NODE_SPECS[graph[n]["class_type"]].output)

        for out in outputs:
            add(out)
        order: list[str] = []
        while pending:
            ready = [n for n in pending if count[n] == 0]
            if not ready:
                break
            pick = next(
                (n for n in ready if is_output(n)),
                next(
                    (n for n in ready if any(is_output(b) for b in blocking[n])),
                    next(
                        (
                            n
                            for n in ready
                            if any(is_output(c) for b in blocking[n] for c in blocking[b])
                        ),
                        ready[0],
                    ),
                ),
            )
            order.append(pick)
            del pending[pick]
            for blocked in blocking.pop(pick):
                count[blocked] -= 1
        return order

    def _signature(self, graph: dict[str, Any], nid: str, memo: dict[str, str]) -> str:
        """A content hash of a node and everything it depends on (uploads included)."""
        if nid in memo:
            return memo[nid]
        node = graph[nid]
        parts: dict[str, Any] = {"class": node["class_type"]}
        for name, value in sorted((node.get("inputs") or {}).items()):
            parts[name] = self._signature(graph, str(value[0]), memo) if _is_link(value) else value
        if node["class_type"] == "LoadImage":
            parts["upload_sha256"] = hashlib.sha256(
                self.uploads.get(str(parts.get("image")), b"")
            ).hexdigest()
        memo[nid] = hashlib.sha256(
            json.dumps(parts, sort_keys=True, default=str).encode()
        ).hexdigest()
        return memo[nid]

    async def _work(self) -> None:
        assert self._wake is not None
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and not self._closing:
                job = self._pending.pop(0)
                self._running, self._interrupt = job, False
                await self._send("status", {"status": self._status()}, None)  # as ComfyUI does
                try:
                    await self._execute(job)
                except _Died:
                    asyncio.get_running_loop().create_task(self.aclose())
                    self._running = None
                    return
                self._running = None
                await self._send("status", {"status": self._status()}, None)
                await self._send(
                    "executing", {"node": None, "prompt_id": job.prompt_id}, job.client_id
                )

    async def _execute(self, job: _Job) -> None:
        sid, pid, graph = job.client_id, job.prompt_id, job.graph
        messages: list[list[Any]] = []
        outputs: dict[str, Any] = {}

        async def emit(kind: str, data: dict[str, Any], record: bool = False) -> None:
            if record:
                messages.append([kind, data])
            await self._send(kind, data, sid)

        await emit("execution_start", {"prompt_id": pid, "timestamp": _now_ms()}, True)
        memo: dict[str, str] = {}
        order: list[str] = []
        for out in job.outputs:
            order += [n for n in self._ancestors(graph, out) if n not in order]
        # ComfyUI's classic cache keeps only the nodes of the prompt before: entries this
        # prompt does not share are dropped first (alternating workflows reload their models)
        wanted = {self._signature(graph, n, memo) for n in order}
        self._cache = {k: v for k, v in self._cache.items() if k in wanted}
        cached = [n for n in order if memo[n] in self._cache]
        await emit(
            "execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _now_ms()}, True
        )
        status = "success"
        executed: list[str] = []  # execution_interrupted/_error report the nodes run so far
        try:
            for nid in self._run_order(graph, job.outputs, set(cached)):
                if nid in cached:  # a cached output node still reports its files
                    outputs[nid] = self._cache[memo[nid]]
                    await emit(
                        "executed",
                        {
                            "node": nid,
                            "display_node": nid,
                            "prompt_id": pid,
                            "output": outputs[nid],
                        },
                    )
                    await self._node_state(job, nid, "finished", 1, 1)
                else:  # ComfyUI's ``executed`` set leaves cached nodes out
                    await self._run_node(job, nid, memo, outputs, emit)
                    executed.append(nid)
            await emit("execution_success", {"prompt_id": pid, "timestamp": _now_ms()}, True)
        except _Interrupted as exc:
            status = "error"
            await emit(
                "execution_interrupted",
                {
                    "prompt_id": pid,
                    "node_id": exc.node,
                    "node_type": graph[exc.node]["class_type"],
                    "executed": executed,
                    "timestamp": _now_ms(),
                },
                True,
            )
        except _Failed as exc:
            status = "error"
            cls = graph[exc.node]["class_type"]
            await emit(
                "execution_error",
                {
                    "prompt_id": pid,
                    "node_id": exc.node,
                    "node_type": cls,
                    "executed": executed,
                    "exception_message": f"FakeComfy injected failure in node {exc.node} ({cls})",
                    "exception_type": "RuntimeError",
                    "traceback": ["FakeComfy: injected failure\n"],
                    "current_inputs": {},
                    "current_outputs": {},
                    "timestamp": _now_ms(),
                },
                True,
            )
        self.history[pid] = {
            "prompt": job.row(),
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in outputs
            },
        }

    async def _run_node(
        self,
        job: _Job,
        nid: str,
        memo: dict[str, str],
        outputs: dict[str, Any],
        emit: Callable[..., Awaitable[None]],
    ) -> None:
        pid, node = job.prompt_id, job.graph[nid]
        await self._before_node(nid)
        await self._node_state(job, nid, "running", 0.0, 1.0)
        await emit("executing", {"node": nid, "display_node": nid, "prompt_id": pid})
        self._after_executing(nid)
        spec = NODE_SPECS[node["class_type"]]
        if spec.models:  # model load happens here, inside execution, as on real ComfyUI
            await self._load(job, nid, spec)
        steps = self._steps(job.graph, node)
        if isinstance(steps, int) and steps > 0:
            await self._sample(job, nid, steps, memo[nid])
        elif self.delay:
            await asyncio.sleep(self.delay)
        if spec.output:
            outputs[nid] = self._make_outputs(job, nid, spec.output, memo[nid])
            self._cache[memo[nid]] = outputs[nid]
            await emit(
                "executed",
                {"node": nid, "display_node": nid, "prompt_id": pid, "output": outputs[nid]},
            )
        else:
            self._cache[memo[nid]] = {}
        last = job.states.get(nid, {})
        done = (
            (1.0, 1.0) if not isinstance(steps, int) or steps <= 0 else (last["value"], last["max"])
        )
        await self._node_state(job, nid, "finished", *done)

    async def _load(self, job: _Job, nid: str, spec: NodeSpec) -> None:
        """A loader node that is not cached reads its files: ``load_delay`` each, recorded."""
        inputs = job.graph[nid].get("inputs") or {}
        for name, folder in spec.models.items():
            if isinstance(inputs.get(name), str):
                self.loads.append(f"{folder}/{inputs[name]}")
                if self.load_delay:
                    await asyncio.sleep(self.load_delay)

    async def _node_state(
        self, job: _Job, nid: str, state: str, value: float, maximum: float
    ) -> None:
        """A ``progress_state`` frame, as real ComfyUI sends around every node (not only samplers).

        Like the recorded ones it carries every node of the prompt seen so far, not just ``nid``.
        """
        pid = job.prompt_id
        job.states[nid] = {
            "value": value,
            "max": maximum,
            "state": state,
            "node_id": nid,
            "prompt_id": pid,
            "display_node_id": nid,
            "parent_node_id": None,
            "real_node_id": nid,
        }
        nodes = {n: dict(entry) for n, entry in job.states.items()}
        await self._send("progress_state", {"prompt_id": pid, "nodes": nodes}, job.client_id)

    def _steps(self, graph: dict[str, Any], node: dict[str, Any]) -> int | None:
        """Sampler steps, following links through Primitive*/ComfySwitchNode like ComfyUI would."""
        if not node["class_type"].startswith("KSampler"):
            return None
        inputs = node.get("inputs") or {}
        steps = self._literal(graph, inputs.get("steps"))
        if not isinstance(steps, int):
            return None
        if node["class_type"] == "KSamplerAdvanced":
            start = self._literal(graph, inputs.get("start_at_step"))
            end = self._literal(graph, inputs.get("end_at_step"))
            if isinstance(start, int) and isinstance(end, int):
                return max(1, min(end, steps) - start)
        return steps

    def _literal(self, graph: dict[str, Any], value: Any, depth: int = 0) -> Any:
        if not _is_link(value) or depth > 20:
            return value
        node = graph.get(str(value[0])) or {}
        inputs = node.get("inputs") or {}
        if node.get("class_type", "").startswith("Primitive"):
            return self._literal(graph, inputs.get("value"), depth + 1)
        if node.get("class_type") == "ComfySwitchNode":
            chosen = (
                "on_true" if self._literal(graph, inputs.get("switch"), depth + 1) else "on_false"
            )
            return self._literal(graph, inputs.get(chosen), depth + 1)
        return None

    async def _sample(self, job: _Job, nid: str, steps: int, sig: str) -> None:
        pid, sid = job.prompt_id, job.client_id
        for step in range(1, steps + 1):
            if self._interrupt:
                raise _Interrupted(nid)
            if self.delay:
                await asyncio.sleep(self.delay)
            await self._node_state(job, nid, "running", step, steps)  # before progress, as recorded
            await self._send(
                "progress", {"value": step, "max": steps, "prompt_id": pid, "node": nid}, sid
            )
            preview = png_bytes(f"{sig}:{step}".encode(), size=4)
            await self._send_bytes(struct.pack(">II", 1, 2) + preview, sid)
            await self._at_step(step)

    def _make_outputs(self, job: _Job, nid: str, kind: str, sig: str) -> dict[str, Any]:
        """Files as the real node reports them: ``type`` output or temp, under its real key.

        Like ComfyUI, PNGs carry the API graph in a ``prompt`` tEXt chunk and
        the UI workflow (``extra_data.extra_pnginfo.workflow``) in ``workflow``.
        """
        graph = job.graph
        inputs = graph[nid].get("inputs") or {}
        prefix = str(inputs.get("filename_prefix", "ComfyUI"))
        subfolder, _, stem = prefix.rpartition("/")
        temp = kind == "temp" or (kind == "gifs" and inputs.get("save_output") is False)
        folder = "temp" if temp else "output"
        if kind == "temp":
            subfolder, stem = "", f"ComfyUI_temp_{sig[:5]}"
        meta = self._provenance(graph, nid, sig)
        results = []
        ext = {"video": "mp4", "webp": "webp", "gifs": "mp4"}.get(kind, "png")
        count = 1 if kind in ("video", "webp", "gifs") else self._batch(graph, nid)
        pnginfo = (job.extra.get("extra_pnginfo") or {}) if isinstance(job.extra, dict) else {}
        for index in range(count):
            counter = self._counters.get(prefix, 0) + 1
            self._counters[prefix] = counter
            filename = f"{stem}_{counter:05}_.{ext}"
            text = {**meta, "index": str(index)}
            if ext == "png":
                chunks = {"prompt": json.dumps(graph)}
                if isinstance(pnginfo, dict) and "workflow" in pnginfo:
                    chunks["workflow"] = json.dumps(pnginfo["workflow"])
                chunks["fakecomfy"] = json.dumps(text)
                data = png_bytes(f"{sig}:{index}".encode(), text=chunks)
            else:
                data = _video_bytes(json.dumps(text).encode(), ext)
            self.files[(folder, subfolder, filename)] = data
            item: dict[str, Any] = {"filename": filename, "subfolder": subfolder, "type": folder}
            if kind == "gifs":
                rate = inputs.get("frame_rate", 8)
                item |= {"format": str(inputs.get("format", "video/h264-mp4")), "frame_rate": rate}
            results.append(item)
        if kind == "gifs":
            return {"gifs": results}
        return {"images": results, "animated": [True]} if ext != "png" else {"images": results}

    def _provenance(self, graph: dict[str, Any], nid: str, sig: str) -> dict[str, str]:
        """What an output was derived from: seeds, texts and uploaded-image hashes upstream."""
        seeds, texts, sources = [], [], []
        for n in self._ancestors(graph, nid):
            inputs, cls = graph[n].get("inputs") or {}, graph[n]["class_type"]
            for key in ("seed", "noise_seed"):
                if isinstance(inputs.get(key), int) and not (
                    cls == "KSamplerAdvanced" and inputs.get("add_noise") == "disable"
                ):
                    seeds.append(inputs[key])
            for key in ("text", "prompt", "clip_l", "t5xxl"):
                if isinstance(inputs.get(key), str) and inputs[key]:
                    texts.append(inputs[key])
            if cls == "LoadImage":
                data = self.uploads.get(str(inputs.get("image")), b"")
                sources.append(hashlib.sha256(data).hexdigest())
        return {
            "double": "FakeComfy",
            "signature": sig,
            "seeds": json.dumps(seeds),
            "texts": json.dumps(texts),
            "source_sha256": json.dumps(sources),
        }

    def _batch(self, graph: dict[str, Any], nid: str) -> int:
        best = 1
        for n in self._ancestors(graph, nid):
            value = (graph[n].get("inputs") or {}).get("batch_size")
            if isinstance(value, int) and value > best:
                best = value
        return best
