"""`nomad bot` as a real process: long-polls the Bot API stub, answers, stops cleanly on SIGINT."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from nomad.testing.botapi import BotApiStub

pytestmark = [pytest.mark.integration]
ALICE = 1001
NOMAD = str(Path(sys.executable).with_name("nomad"))


async def test_nomad_bot_process(botapi: BotApiStub, stack: Any, tmp_path: Path) -> None:
    """The CLI runs the bot from config + env, queues a job, never logs the token, exits 0 on SIGINT."""
    (tmp_path / "nomad.yaml").write_text(json.dumps({"bot": {"allowlist": [ALICE]}}))
    env = {
        **os.environ,
        "NOMAD_CONFIG": str(tmp_path / "nomad.yaml"),
        "NOMAD_DATA_DIR": str(tmp_path / "data"),
        "NOMAD_BOT_TOKEN": botapi.token,
        "NOMAD_BOT_API_URL": botapi.base_url,
        "NOMAD_S3_ENDPOINT": stack.s3_endpoint,
        "NOMAD_S3_ACCESS_KEY_ID": stack.access_key,
        "NOMAD_S3_SECRET_ACCESS_KEY": stack.secret_key,
        "NOMAD_S3_REGION": stack.region,
    }
    proc = await asyncio.create_subprocess_exec(
        NOMAD,
        "-vv",
        "bot",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await botapi.wait_for(lambda c: c.method == "getUpdates", timeout=60)
        botapi.user_sends_text(ALICE, "/f a lighthouse at dusk --seed 3")
        await botapi.wait_for_text(ALICE, "⏳ queued #1", timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode()
    assert proc.returncode == 0, log[-2000:]
    assert "getUpdates" in log  # debug logging was on…
    assert botapi.token not in log + out.decode()  # …and the token never appeared
    from nomad.queue import open_queue

    queue = open_queue(None, tmp_path / "data")
    try:
        [job] = queue.list(user=str(ALICE))
        assert job.workflow == "flux_schnell" and job.params["seed"] == 3
        assert queue.get_state("bot", "pending") == {"jobs": [job.id]}  # resumes on next start
    finally:
        queue.close()
