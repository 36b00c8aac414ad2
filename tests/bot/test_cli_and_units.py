"""`nomad bot` wiring, token hygiene, option parsing and status wording."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from click.testing import CliRunner

from nomad.cli.main import cli
from nomad.errors import LimitExceeded, UsageError
from nomad.queue.base import Job, JobStatus
from nomad.testing.botapi import BotApiStub
from nomad_bot import texts
from nomad_bot.options import parse_message

ALICE = 1001


def test_bot_help() -> None:
    """`nomad bot --help` works and names the token variable."""
    result = CliRunner().invoke(cli, ["bot", "--help"])
    assert result.exit_code == 0 and "NOMAD_BOT_TOKEN" in result.output


def test_bot_without_token_is_a_config_error(tmp_path: Any, monkeypatch: Any) -> None:
    """No token ⇒ exit 2 with what to set, nothing started."""
    from nomad.cli.errors import run_cli

    monkeypatch.delenv("NOMAD_BOT_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run_cli(cli, ["--data-dir", str(tmp_path), "bot", "--check"])
    assert exc.value.code == 2


def test_bot_check_fails_when_storage_is_unreachable(tmp_path: Any, monkeypatch: Any) -> None:
    """`nomad bot --check` really reaches S3: a dead endpoint is a storage error, not "ok"."""
    from nomad.cli.errors import run_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOMAD_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("NOMAD_S3_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("NOMAD_S3_ACCESS_KEY_ID", "AK")
    monkeypatch.setenv("NOMAD_S3_SECRET_ACCESS_KEY", "SK")
    with pytest.raises(SystemExit) as exc:
        run_cli(cli, ["--data-dir", str(tmp_path), "bot", "--check"])
    assert exc.value.code == 4


def test_bot_loads_workflows_from_workflows_dirs(tmp_path: Any) -> None:
    """A command bound to a workflow in workflows.dirs (not a built-in) loads."""
    import shutil

    from nomad.workflows._library import builtin_dir
    from nomad_bot.run import workflow_loader

    src = builtin_dir()
    shutil.copy(src / "flux_schnell.json", tmp_path / "flux_schnell.json")
    text = (src / "flux_schnell.yaml").read_text().replace("name: flux_schnell", "name: my_flux")
    (tmp_path / "my_flux.yaml").write_text(text)
    assert workflow_loader([tmp_path])("my_flux").params


async def test_token_never_logged(
    botapi: BotApiStub, make_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With every logger at DEBUG, the token never appears in a log line (it is redacted)."""
    from nomad_bot.run import protect_token

    caplog.set_level(logging.DEBUG)
    protect_token(botapi.token)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # even if someone turns httpx up
    async with make_bot():
        botapi.user_sends_text(ALICE, "/start")
        await botapi.wait_for_text(ALICE, "Hi!")
    assert "getUpdates" in caplog.text  # the requests were logged…
    assert botapi.token not in caplog.text  # …without the token
    for handler in logging.getLogger().handlers:
        handler.filters.clear()


def test_token_redacted_from_tracebacks() -> None:
    """A logged exception whose text holds the token (a request URL) is redacted in the traceback."""
    import io

    from nomad_bot.run import RedactToken

    token = "123456:SECRET-token"
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactToken(token))
    log = logging.getLogger("nomad.test.redact")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"GET https://api.telegram.org/bot{token}/getUpdates failed")
        except RuntimeError:
            log.exception("bot handler failed", stack_info=True)
    finally:
        log.removeHandler(handler)
    assert "getUpdates failed" in out.getvalue() and token not in out.getvalue()


def test_parse_options() -> None:
    """Options anywhere in the message are taken out; numbers typed; the rest is the prompt."""
    p = parse_message("/f@nomad_bot an astronaut --seed 42 riding --ar 16:9 --cfg=3.5")
    assert p.command == "f" and p.prompt == "an astronaut riding"
    assert p.values == {"seed": 42, "ar": "16:9", "cfg": 3.5}


def test_parse_rejects_duplicates() -> None:
    """The same option twice is an error naming it."""
    with pytest.raises(UsageError, match="--seed is given twice"):
        parse_message("/f cat --seed 1 --seed 2")


def test_limit_text_names_reset_time() -> None:
    """A quota refusal says when it resets, in UTC and as a duration."""
    exc = LimitExceeded("you reached 5 jobs in the last 24 hours", resets_at=3600.0 * 5)
    text = texts.limit_text(exc, now=3600.0 * 3)
    assert "05:00 UTC" in text and "in 2 h 0 min" in text


def test_status_text_phases() -> None:
    """Each job state reads as plain words: queued+waking ETA (whole minutes), running % (tens), uploading, failed advice."""
    job = Job(id="abcdef1234", workflow="flux_schnell")
    cold = {"state": "waking", "ready_at": 190.0}
    assert texts.status_text(job, 2, cold, now=100.0).startswith(
        "⏳ queued #2 · GPU waking, ~2 min"
    )
    job.status, job.progress = JobStatus.RUNNING, 0.42
    assert texts.status_text(job, None, None, 0).startswith("⚙️ running · 40%")
    job.times["executed_at"] = 1.0
    assert texts.status_text(job, None, None, 0).startswith("⬆️ uploading")
    job.status, job.error = JobStatus.FAILED, "no capacity for any candidate"
    assert texts.status_text(job, None, None, 0).startswith("❌ failed")
    assert "Try again in a few minutes" in texts.failure_text(job)


def test_caption_fits() -> None:
    """Captions stay ≤ 1024 characters and keep the seed."""
    text = texts.caption("x" * 5000, 123, "flux_dev")
    assert len(text) == 1024 and text.endswith("flux_dev · seed 123")


async def test_bot_check_calls_get_me(
    tmp_path: Any, monkeypatch: Any, botapi: BotApiStub, storage: Any
) -> None:
    """`nomad bot --check` asks the Bot API (getMe): a good token prints the bot's name, a refused one exits 2."""
    import asyncio

    from nomad.testing.cli import run_nomad

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NOMAD_BOT_API_URL", botapi.base_url)
    monkeypatch.setenv("NOMAD_BOT_TOKEN", botapi.token)
    s3 = storage.settings
    for var, value in (
        ("NOMAD_S3_ENDPOINT", s3.endpoint_url),
        ("NOMAD_S3_BUCKET", s3.bucket),
        ("NOMAD_S3_REGION", s3.region),
        ("NOMAD_S3_ACCESS_KEY_ID", s3.access_key_id),
        ("NOMAD_S3_SECRET_ACCESS_KEY", s3.secret_access_key),
    ):
        monkeypatch.setenv(
            var, str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
        )
    code, out, err = await asyncio.to_thread(run_nomad, tmp_path, "bot", "--check")
    assert code == 0, err
    assert "@nomad_stub_bot" in out and botapi.calls_to("getMe")
    monkeypatch.setenv("NOMAD_BOT_TOKEN", "999:wrong-token")
    code, out, err = await asyncio.to_thread(run_nomad, tmp_path, "bot", "--check")
    assert code == 2 and "refused the bot token" in err and "wrong-token" not in out + err
