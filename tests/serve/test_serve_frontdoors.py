"""`nomad serve --with-bot --with-batch`: the front doors inside the serve process.

Real pieces: the `nomad serve` process (or `serve()` in-process), the
python-telegram-bot Application, the SQLite queue, the embedded S3 stack, the
local backend. Doubles: BotApiStub (a Telegram Bot API protocol double),
FakeComfy (a ComfyUI protocol double, as processes or in-process) and
FakeBackend (launches nothing).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nomad.config.schema import BatchJob, NomadConfig
from nomad.queue import JobStatus, open_queue
from nomad.queue.base import Job, JobQueue
from nomad.testing.botapi import BotApiStub
from nomad.testing.wait import eventually_async
from tests.serve.test_serve_e2e import GRAPH, free_port_pair

ALICE = 1001
NOMAD = str(Path(sys.executable).with_name("nomad"))
WALLPAPER_KEY = "wallpapers/{name}/{date}/{time}{ext}"


@pytest.fixture
async def botapi() -> AsyncIterator[BotApiStub]:
    """A fresh Bot API stub on a free loopback port."""
    async with BotApiStub() as stub:
        yield stub


async def until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``check`` (bounded) without blocking the loop the stub runs on."""
    return await eventually_async(check, timeout=timeout, interval=0.2, what=what)


def batch_jobs(queue: JobQueue) -> list[Job]:
    """Every job the batch front door enqueued."""
    return [j for j in queue.list(limit=500) if j.front_door == "batch"]


def wallpaper_key(job: Job) -> str:
    """Where the wallpaper template puts output 0 of ``job`` (a PNG)."""
    slot = dt.datetime.fromisoformat(job.meta["slot"])
    return f"wallpapers/wallpaper/{slot:%Y-%m-%d}/{slot:%H%M}.png"


# ---- refusals: before anything starts --------------------------------------------------------


def run_nomad(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run the CLI in-process through its one error-to-exit-code place."""
    from nomad.cli.errors import run_cli
    from nomad.cli.main import cli

    runner = CliRunner(mix_stderr=False)
    with runner.isolation() as (_, err):
        try:
            run_cli(cli, ["--data-dir", str(tmp_path / "data"), *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        assert err is not None
        return code, err.getvalue().decode()


def test_with_bot_without_token_exits_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token: a config error (exit 2) that names NOMAD_BOT_TOKEN; no queue was created."""
    monkeypatch.chdir(tmp_path)
    for var in ("NOMAD_CONFIG", "NOMAD_BOT_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    code, err = run_nomad(tmp_path, "serve", "--with-bot")
    assert code == 2, err
    assert "no Telegram bot token" in err and "NOMAD_BOT_TOKEN" in err
    assert not (tmp_path / "data" / "queue.db").exists()


def test_with_bot_without_telegram_extra_exits_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No python-telegram-bot: not-available (exit 3) with the pip hint; no queue was created."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOMAD_CONFIG", raising=False)
    monkeypatch.setenv("NOMAD_BOT_TOKEN", "123:abc")
    monkeypatch.setitem(sys.modules, "telegram", None)  # `import telegram` now fails
    code, err = run_nomad(tmp_path, "serve", "--with-bot")
    assert code == 3, err
    assert "python-telegram-bot" in err and "pip install 'nomad-comfy[bot]'" in err
    assert not (tmp_path / "data" / "queue.db").exists()


def test_serve_help_lists_the_front_door_flags() -> None:
    """`nomad serve --help` documents --with-bot, --with-batch and --batch-interval."""
    from nomad.cli.main import cli

    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--with-bot" in out and "--with-batch" in out and "--batch-interval" in out


# ---- the batch scheduler inside serve ---------------------------------------------------------


async def test_batch_door_enqueues_a_slot_once_and_stops_on_exit(
    tmp_path: Path, storage: Any
) -> None:
    """Rounds within one minute enqueue the due slot once; leaving the block ends the task."""
    from nomad.serve.server import batch_door, batch_round

    queue = open_queue(None, tmp_path)
    jobs = [BatchJob(name="wallpaper", schedule="* * * * *", workflow="g.json")]
    noon = dt.datetime(2026, 1, 2, 12, 0, 30, tzinfo=dt.UTC)
    try:
        for _ in range(3):
            await batch_round(queue, jobs, storage, noon)
        [job] = batch_jobs(queue)
        assert job.client_key == "batch:wallpaper:2026-01-02T12:00Z"
        async with batch_door(queue, jobs, storage, 3600, clock=lambda: noon) as task:
            pass
        assert task.done() and not task.cancelled() and task.exception() is None
        assert len(batch_jobs(queue)) == 1
    finally:
        queue.close()


async def test_batch_round_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A round whose storage fails logs that job's failure and returns (serve keeps running)."""
    import logging

    from nomad.errors import StorageError
    from nomad.serve.server import batch_round

    class BrokenStorage:
        """A Storage double whose every call fails like an unreachable S3."""

        def get_bytes(self, key: str) -> bytes:
            raise StorageError(f"get {key}: connection refused")

        def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
            raise StorageError(f"put {key}: connection refused")

    queue = open_queue(None, tmp_path)
    try:
        job = queue.enqueue("g.json", {}, front_door="batch", meta={"output_key": "k{ext}"})
        leased = queue.lease("w")
        assert leased is not None and leased.id == job.id
        queue.complete(job.id, leased.lease_token or "", outputs=["outputs/x/0.png"])
        with caplog.at_level(logging.INFO, logger="nomad.serve"):
            await batch_round(queue, [], BrokenStorage(), dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
        assert f"batch.job_failed job={job.id} step=collect" in caplog.text
        assert "connection refused" in caplog.text
    finally:
        queue.close()


# ---- the bot inside serve, in-process: stop keeps the job, the next start delivers ----------


async def test_stop_mid_job_keeps_it_and_the_next_serve_delivers_the_photo(
    botapi: BotApiStub, storage: Any, tmp_path: Path
) -> None:
    """Stopping serve while /f runs requeues the job (not lost); the next serve's bot sends it."""
    from nomad.backends.base import LaunchSpec
    from nomad.serve.autoscaler import BackendOps
    from nomad.serve.outputs import S3Outputs
    from nomad.serve.server import ServeOptions, serve
    from nomad.testing.backend import FakeBackend
    from nomad.testing.comfy import FakeComfy

    cfg = NomadConfig.model_validate(
        {
            "project": "doors",
            "infra": {"idle_minutes": 10},
            "bot": {"allowlist": [ALICE], "token": botapi.token, "base_url": botapi.base_url},
        }
    )
    opts = ServeOptions(
        interval=0.1, grace_seconds=0, heartbeat_seconds=0.2, with_bot=True, bot_poll_timeout=1
    )
    queue = open_queue(None, tmp_path)

    async def one_serve(fc: FakeComfy, stop: asyncio.Event) -> None:
        backend = FakeBackend(endpoints=[fc.url], gpu="fake-gpu", price_per_hour=0.5)
        spec = LaunchSpec(cluster_name="doors", image_ref="fake@sha256:0")
        ops = BackendOps(backend, spec, None, health_timeout_s=30)
        await serve(
            cfg, tmp_path, queue=queue, ops=ops, store=S3Outputs(storage), stop=stop, options=opts
        )

    try:
        async with FakeComfy(hold_at_step=1) as fc:
            stop = asyncio.Event()
            first = asyncio.create_task(one_serve(fc, stop))
            botapi.user_sends_text(ALICE, "/f an astronaut")
            await botapi.wait_for_text(ALICE, "running", timeout=60)
            stop.set()
            await asyncio.wait_for(first, 60)
            [job] = queue.list(user=str(ALICE))
            assert job.status is JobStatus.QUEUED  # given back, not lost
            assert queue.get_state("bot", "pending") == {"jobs": [job.id]}
            assert not botapi.calls_to("sendPhoto")

            fc.hold_at_step = None
            mark = botapi.mark()
            stop = asyncio.Event()
            second = asyncio.create_task(one_serve(fc, stop))
            try:
                photo = await botapi.wait_for(
                    lambda c: c.method == "sendPhoto" and c.status == 200, since=mark, timeout=60
                )
            finally:
                stop.set()
                await asyncio.wait_for(second, 60)
        assert photo.files["photo"].data.startswith(b"\x89PNG")
        assert queue.get(job.id).status is JobStatus.SUCCEEDED
    finally:
        queue.close()


# ---- the whole small deployment as one real process --------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
async def test_one_process_serves_bot_and_batch_then_exits_on_sigterm(
    botapi: BotApiStub, stack: Any, tmp_path: Path
) -> None:
    """/f through the stub gets a photo; a due batch slot runs once and lands at its key; SIGTERM ⇒ 0."""
    from nomad.storage import Storage

    bucket = f"doors-{os.urandom(5).hex()}"
    store = Storage(stack.s3_settings(bucket))
    store.ensure_bucket()
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    comfy = [sys.executable, "-m", "nomad.testing.comfy", "--host", "127.0.0.1", "--port", "{port}"]
    config = {
        "project": "doors",
        "storage": {"bucket": bucket},
        "image": {"comfyui": {"port": free_port_pair()}},
        "infra": {
            "backend": "local",
            "idle_minutes": 10,
            "local": {"mode": "command", "command": comfy, "gpus": 2, "gpu_name": "fake-gpu"},
        },
        "bot": {"allowlist": [ALICE]},
        "batch": {
            "jobs": [
                {
                    "name": "wallpaper",
                    "schedule": "* * * * *",
                    "workflow": str(tmp_path / "graph.json"),
                    "output_key": WALLPAPER_KEY,
                }
            ]
        },
    }
    (tmp_path / "nomad.yaml").write_text(json.dumps(config))
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
    args = ["serve", "--with-bot", "--with-batch", "--batch-interval", "0.2", "--interval", "0.2"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:  # a file, not a pipe: a full pipe would stall serve
        proc = await asyncio.create_subprocess_exec(
            NOMAD, *args, "--grace", "5", env=env, stdout=log_file, stderr=log_file
        )
    try:  # the stub keeps the update until the bot's first long poll takes it
        botapi.user_sends_text(ALICE, "/f an astronaut")
        photo = await botapi.wait_for(
            lambda c: c.method == "sendPhoto" and c.status == 200, timeout=120
        )
        queue = open_queue(None, tmp_path / "data")
        try:

            def collected() -> list[Job]:
                done = [j for j in batch_jobs(queue) if j.status is JobStatus.SUCCEEDED]
                return [j for j in done if queue.get_state("batch-collected", j.id)]

            [wallpaper, *_] = await until("a batch output at its key", collected)
            assert store.get_bytes(wallpaper_key(wallpaper)).startswith(b"\x89PNG")
            collected_doc = queue.get_state("batch-collected", wallpaper.id) or {}
            assert collected_doc["keys"] == [wallpaper_key(wallpaper)]
            slots = [j.meta["slot"] for j in batch_jobs(queue)]
            assert len(slots) == len(set(slots))  # every tick ran, each slot was enqueued once
        finally:
            queue.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The exited bot's last long poll still waits in the stub: wake it so the stub stops at once.
    botapi.user_sends_text(ALICE, "/help")
    log = log_path.read_text()
    assert proc.returncode == 0, log[-3000:]
    assert photo.files["photo"].data.startswith(b"\x89PNG")
    assert "batch.queued batch=wallpaper" in log and "bot.stopped" in log
    assert botapi.token not in log
