"""Full flow on the embedded default: bot → SQLite queue → autoscaler → worker → ComfyUI double → S3 → bot.

Real pieces: the PTB Application (against BotApiStub, a Bot API protocol
double), the SQLite queue, `nomad.serve` (autoscaler + workers, in-process),
the workflow library, the S3 stack. Doubles: FakeBackend (launches nothing;
gated here so the "waking" phase is observable without timing) and FakeComfy
(ComfyUI protocol double; ``hold_at_step`` keeps a job "running" until released).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from nomad.testing.botapi import BotApiStub

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = 1001


def gated_backend(endpoint: str) -> Any:
    """A FakeBackend whose launch waits until the test opens the gate (bounded)."""
    from nomad.testing.backend import FakeBackend

    class GatedBackend(FakeBackend):
        gate = threading.Event()

        def launch(self, spec: Any, offer: Any = None) -> Any:
            assert self.gate.wait(30), "the test never opened the launch gate"
            return super().launch(spec, offer)

    return GatedBackend(endpoints=[endpoint], gpu="fake-gpu", price_per_hour=0.5)


async def test_f_then_qwen_chains_through_the_whole_stack(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any, tmp_path: Path
) -> None:
    """/f wakes the GPU (status: waking → running → photo); /qwen then edits exactly that output."""
    from nomad.backends.base import LaunchSpec
    from nomad.config.schema import NomadConfig
    from nomad.serve.autoscaler import BackendOps
    from nomad.serve.outputs import S3Outputs
    from nomad.serve.server import ServeOptions, serve
    from nomad.testing.comfy import FakeComfy

    cfg = NomadConfig.model_validate({"project": "botflow", "infra": {"idle_minutes": 10}})
    async with FakeComfy(hold_at_step=1) as fc:
        backend = gated_backend(fc.url)
        ops = BackendOps(
            backend,
            LaunchSpec(cluster_name="botflow", image_ref="fake@sha256:0"),
            None,
            health_timeout_s=30,
        )
        stop = asyncio.Event()
        server = asyncio.create_task(
            serve(
                cfg,
                tmp_path,
                queue=queue,
                ops=ops,
                store=S3Outputs(storage),
                stop=stop,
                options=ServeOptions(interval=0.1, grace_seconds=2, heartbeat_seconds=0.2),
            )
        )
        try:
            async with make_bot():
                botapi.user_sends_text(ALICE, "/f an astronaut")
                await botapi.wait_for_text(ALICE, "waking", timeout=30)
                backend.gate.set()
                await botapi.wait_for_text(ALICE, "running", timeout=30)
                fc.release()
                first = await botapi.wait_for(
                    lambda c: c.method == "sendPhoto" and c.status == 200, timeout=30
                )
                await botapi.wait_for_text(ALICE, "✅ done", timeout=30)

                mark = botapi.mark()
                botapi.user_sends_text(ALICE, "/qwen put a t-shirt on him")
                await botapi.wait_for_text(ALICE, "running", since=mark, timeout=30)
                fc.release()
                second = await botapi.wait_for(
                    lambda c: c.method == "sendPhoto" and c.status == 200, since=mark, timeout=30
                )
        finally:
            stop.set()
            await asyncio.wait_for(server, 30)
    first_png = first.files["photo"].data
    assert first_png.startswith(b"\x89PNG")
    assert (
        first_png in fc.uploads.values()
    )  # the edit job's input is the previous output, byte for byte
    assert second.files["photo"].data != first_png
    assert "put a t-shirt on him" in second.params["caption"]
    status = botapi.calls_to("sendMessage")[0]
    history = [status.params["text"], *botapi.edits[(ALICE, status.result["message_id"])]]
    waking = next(i for i, t in enumerate(history) if "waking" in t)
    running = next(i for i, t in enumerate(history) if "running" in t)
    assert waking < running
