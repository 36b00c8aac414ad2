"""ComfyClient.run gives up cleanly: cancellation, on_event errors, timeouts, a forgotten prompt.

FakeComfy is the ComfyUI protocol double (not real ComfyUI). ``hold_at_step``
parks the sampler, so "the run did not wait for the prompt to finish" is
proven by the prompt's state, never by a clock.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from nomad.comfy import ComfyClient, ComfyEvent, ComfyTimeout
from nomad.errors import ComfyError
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually_async

from .conftest import t2i_graph


class CallbackBug(Exception):
    """What a buggy on_event handler raises in these tests."""


def _interrupted_at_sampler(fc: FakeComfy, prompt_id: str) -> bool:
    """True if the prompt ended interrupted in the KSampler (node 31), i.e. it never completed."""
    entry = fc.history.get(prompt_id)
    if entry is None:
        return False
    kind, data = entry["status"]["messages"][-1]
    return bool(kind == "execution_interrupted" and data["node_id"] == "31")


async def _wait_for(predicate: Any, tries: int = 500) -> None:
    """Bounded wait for a condition on the double's state."""
    await eventually_async(predicate, timeout=tries * 0.01, interval=0.01, what="the double's state")


async def test_cancel_raises_while_held_and_interrupts_the_prompt() -> None:
    """task.cancel() during a held sampler raises CancelledError and interrupts our prompt."""
    async with FakeComfy(hold_at_step=2, hold_timeout=60) as fc, ComfyClient(fc.url) as client:
        held = asyncio.Event()
        seen: list[str] = []

        def on_event(event: ComfyEvent) -> None:
            seen.append(event.prompt_id or "")
            if event.type == "progress" and event.value == 2:
                held.set()

        task = asyncio.create_task(client.run(t2i_graph(), on_event=on_event, timeout=300))
        await held.wait()
        task.cancel()  # right after the held frame: later frames may already be buffered
        with pytest.raises(asyncio.CancelledError):
            await task
        prompt_id = seen[-1]
        assert prompt_id in fc.interrupts and prompt_id in fc.deleted
        await _wait_for(lambda: prompt_id in fc.history)
        assert _interrupted_at_sampler(fc, prompt_id)


async def test_cancel_from_inside_an_event_handler_propagates() -> None:
    """A cancel that lands while the next frame is already buffered is not swallowed."""
    async with FakeComfy(hold_at_step=2, hold_timeout=60) as fc, ComfyClient(fc.url) as client:
        ids: list[str] = []

        def on_event(event: ComfyEvent) -> None:
            if event.type == "progress" and event.value == 1:
                ids.append(event.prompt_id or "")
                task = asyncio.current_task()
                assert task is not None
                task.cancel()  # the preview frame of step 1 follows right behind

        with pytest.raises(asyncio.CancelledError):
            await client.run(t2i_graph(), on_event=on_event, timeout=300)
        assert ids and ids[0] in fc.interrupts
        await _wait_for(lambda: ids[0] in fc.history)
        assert _interrupted_at_sampler(fc, ids[0])


async def test_cancel_while_pending_deletes_only_our_prompt() -> None:
    """Cancelling a run whose prompt waits in the queue deletes it; the running one is untouched."""
    async with (
        FakeComfy(hold_at_step=1, hold_timeout=60) as fc,
        ComfyClient(fc.url, poll_interval=0.05) as client,
    ):
        other = await client.queue_prompt(t2i_graph(seed=1), "someone-else")
        task = asyncio.create_task(client.run(t2i_graph(seed=2), timeout=300))
        await _wait_for(lambda: len(fc.prompts) == 2)
        (ours,) = [row[1] for row in (await client.queue())["queue_pending"]]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        queue = await client.queue()
        assert fc.deleted == [ours] and fc.interrupts == [ours]
        assert queue["queue_pending"] == [] and queue["queue_running"][0][1] == other
        fc.release()
        await _wait_for(lambda: other in fc.history)
    assert fc.history[other]["status"]["status_str"] == "success"


async def test_event_handler_error_interrupts_and_reraises() -> None:
    """An exception from on_event is re-raised unchanged, and our prompt is interrupted."""
    async with FakeComfy(hold_at_step=2, hold_timeout=60) as fc, ComfyClient(fc.url) as client:
        ids: list[str] = []

        def on_event(event: ComfyEvent) -> None:
            if event.type == "progress" and event.value == 2:
                ids.append(event.prompt_id or "")
                raise CallbackBug("progress bar exploded")

        with pytest.raises(CallbackBug, match="progress bar exploded"):
            await client.run(t2i_graph(), on_event=on_event, timeout=300)
        assert fc.interrupts == ids
        await _wait_for(lambda: ids[0] in fc.history)
        assert _interrupted_at_sampler(fc, ids[0])


async def test_run_timeout_interrupts_the_prompt() -> None:
    """When the run's own timeout expires, ComfyTimeout is raised and the prompt is dropped."""
    async with (
        FakeComfy(hold_at_step=1, hold_timeout=60) as fc,
        ComfyClient(fc.url, poll_interval=0.05) as client,
    ):
        with pytest.raises(ComfyTimeout):
            await client.run(t2i_graph(), timeout=0.2)  # the hold outlasts it by construction
        (prompt_id,) = fc.deleted
        assert fc.interrupts == [prompt_id]
        await _wait_for(lambda: fc._running is None)
    assert fc.history.get(prompt_id, {}).get("status", {}).get("status_str") != "success"


async def test_finished_prompt_missing_from_history_is_an_error_not_a_hang() -> None:
    """A prompt that finished but vanished from /history (cleared, restart) fails the run."""
    async with FakeComfy() as fc, ComfyClient(fc.url, poll_interval=0.05) as client:

        async def on_event(event: ComfyEvent) -> None:
            if event.type == "execution_success":  # the client now trusts /history alone
                pid = event.prompt_id or ""
                await _wait_for(lambda: pid in fc.history)
                del fc.history[pid]  # as if someone cleared it, or ComfyUI restarted

        with pytest.raises(ComfyError, match="neither queued nor in the history"):
            await client.run(t2i_graph(), on_event=on_event, timeout=60)  # bound for the old hang
        assert fc.interrupts == []  # nothing left to stop


async def test_cancel_is_bounded_when_the_server_hangs() -> None:
    """If the server stops answering, cancel still raises once cleanup_timeout has passed."""
    never = asyncio.Event()  # set only at the end: the hung requests then return
    polled, hung = asyncio.Event(), asyncio.Event()
    queued: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/prompt" and request.method == "POST":
            queued.append(json.loads(request.content)["prompt_id"])
            return httpx.Response(200, json={"prompt_id": queued[-1]})
        if path.startswith("/history/"):
            polled.set()
            return httpx.Response(200, json={})
        if path == "/queue" and request.method == "GET":
            rows = [[1, pid, {}, {}, []] for pid in queued]
            return httpx.Response(200, json={"queue_running": rows, "queue_pending": []})
        hung.set()  # /interrupt or the queue delete: a server that no longer answers
        await never.wait()
        return httpx.Response(200)

    def no_socket(*args: Any, **kwargs: Any) -> Any:
        raise OSError("protocol double: no /ws")

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ComfyClient(
        "http://comfy.invalid",
        http=http,
        ws_connect=no_socket,
        poll_interval=0.01,
        cleanup_timeout=0.2,
    )
    try:
        task = asyncio.create_task(client.run(t2i_graph(), timeout=300))
        await polled.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert hung.is_set()
    finally:
        never.set()
        await http.aclose()


class ChattySocketDouble:
    """A /ws protocol double: a ``status`` broadcast on every recv, never news of our prompt."""

    def __init__(self) -> None:
        self.closed = False

    async def recv(self) -> str:
        await asyncio.sleep(0.01)  # a busy server: other clients keep queueing
        return json.dumps({"type": "status", "data": {"status": {"exec_info": {}}}})

    async def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(120)  # the old behaviour waited out the hour-long run timeout
async def test_broadcasts_do_not_postpone_the_vanished_check() -> None:
    """Status frames from a busy server don't hide that our prompt was deleted from the queue."""
    sock = ChattySocketDouble()

    async def connect(*args: Any, **kwargs: Any) -> ChattySocketDouble:
        return sock

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(200, json={"prompt_id": json.loads(request.content)["prompt_id"]})
        if request.url.path == "/queue":  # deleted by someone else: not queued, not running
            return httpx.Response(200, json={"queue_running": [], "queue_pending": []})
        return httpx.Response(200, json={})  # /history/{id}: unknown

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
        ComfyClient("http://comfy.invalid", http=http, ws_connect=connect, poll_interval=0.05) as c,
    ):
        with pytest.raises(ComfyError, match="neither queued nor in the history"):
            await c.run(t2i_graph(), timeout=3600)
    assert sock.closed
