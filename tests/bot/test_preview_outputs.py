"""The bot delivers results only: a PreviewImage + SaveImage (batch 2) job sends exactly 2 photos.

Real pieces: the PTB Application (against BotApiStub), the SQLite queue,
`nomad.serve` in-process, real S3. Doubles: FakeBackend and FakeComfy, which
reports PreviewImage files as ``type: temp`` as a real ComfyUI 0.28 does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nomad.testing.botapi import BotApiStub
from tests.comfy.conftest import write_preview_workflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = 1001


async def test_preview_and_save_job_sends_two_photos(
    botapi: BotApiStub, make_bot: Any, queue: Any, storage: Any, tmp_path: Path
) -> None:
    """/p on a graph with PreviewImage + SaveImage (batch 2) → 2 sendPhoto calls, then done."""
    from nomad.backends.base import LaunchSpec
    from nomad.config.schema import BotConfig, NomadConfig
    from nomad.serve.autoscaler import BackendOps
    from nomad.serve.outputs import S3Outputs
    from nomad.serve.server import ServeOptions, serve
    from nomad.testing.backend import FakeBackend
    from nomad.testing.comfy import FakeComfy
    from nomad_bot.run import workflow_loader

    wf_dir = tmp_path / "wf"
    write_preview_workflow(wf_dir)
    cfg = NomadConfig.model_validate(
        {"project": "botprev", "infra": {"idle_minutes": 10}, "workflows": {"dirs": [str(wf_dir)]}}
    )
    bot_cfg = BotConfig(allowlist=[ALICE], commands={"p": "preview_and_save"})
    async with FakeComfy() as fc:
        backend = FakeBackend(endpoints=[fc.url], gpu="fake-gpu", price_per_hour=0.5)
        ops = BackendOps(
            backend, LaunchSpec(cluster_name="botprev", image_ref="fake@sha256:0"), None,
            health_timeout_s=30,
        )  # fmt: skip
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
            async with make_bot(config=bot_cfg, load_workflow=workflow_loader([str(wf_dir)])):
                botapi.user_sends_text(ALICE, "/p two squares")
                await botapi.wait_for_text(ALICE, "✅ done", timeout=60)
        finally:
            stop.set()
            await asyncio.wait_for(server, 30)
    photos = [c for c in botapi.calls_to("sendPhoto") if c.status == 200]
    assert len(photos) == 2
    assert all(p.files["photo"].data.startswith(b"\x89PNG") for p in photos)
    assert any(k[0] == "temp" for k in fc.files)  # previews existed on the server side
