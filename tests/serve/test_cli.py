"""`nomad submit` / `nomad jobs` / the status summary, through Click's CliRunner on a SQLite queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nomad.cli.main import cli
from nomad.config.schema import NomadConfig
from nomad.queue import JobStatus, open_queue
from nomad.serve.summary import queue_summary


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOMAD_CONFIG", raising=False)
    (tmp_path / "g.json").write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))

    def invoke(*args: str) -> tuple[int, str]:
        res = CliRunner().invoke(
            cli, ["--data-dir", str(tmp_path / "data"), *args], catch_exceptions=False
        )
        return res.exit_code, res.output

    return invoke


def test_submit_list_show_cancel_json(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """submit parses --set values, jobs lists it, show has timings fields, cancel cancels."""
    code, out = run("submit", "g.json", "--set", "steps=4", "--set", "prompt=a cat", "--json")
    assert code == 0, out
    job = json.loads(out)
    assert job["params"] == {"steps": 4, "prompt": "a cat"} and job["position"] == 1
    assert job["workflow"] == str(tmp_path / "g.json")
    code, out = run("jobs", "--json")
    assert [j["id"] for j in json.loads(out)] == [job["id"]]
    code, out = run("jobs", "show", job["id"], "--json")
    assert json.loads(out)["status"] == "queued" and "phases" in json.loads(out)
    code, out = run("jobs", "show", job["id"])
    assert code == 0 and job["id"] in out
    code, out = run("jobs", "cancel", job["id"], "--json")
    assert json.loads(out)["status"] == "cancelled"


def test_submit_is_idempotent_on_client_key(run) -> None:  # type: ignore[no-untyped-def]
    """The same --client-key twice gives the same job id."""
    a = json.loads(run("submit", "g.json", "--client-key", "k", "--json")[1])
    b = json.loads(run("submit", "g.json", "--client-key", "k", "--json")[1])
    assert a["id"] == b["id"]


def test_bad_set_and_unknown_job_are_clear_errors(run) -> None:  # type: ignore[no-untyped-def]
    """A --set without '=' is a usage error (exit 2); an unknown job id is a queue error (exit 7)."""
    from nomad.errors import JobNotFound, UsageError

    with pytest.raises(UsageError, match="NAME=VALUE"):
        run("submit", "g.json", "--set", "oops")
    with pytest.raises(JobNotFound, match="nope"):
        run("jobs", "show", "nope")


def test_queue_summary_for_status(tmp_path: Path) -> None:
    """No queue ⇒ None (nothing created); with jobs ⇒ depth and a stale-serve marker."""
    cfg = NomadConfig()
    assert queue_summary(cfg, tmp_path) is None and not (tmp_path / "queue.db").exists()
    q = open_queue(cfg, tmp_path)
    q.enqueue("w", {})
    q.close()
    summary = queue_summary(cfg, tmp_path)
    assert summary is not None and summary["waiting"] == 1 and summary["serve_running"] is False
    assert summary["counts"][JobStatus.QUEUED.value] == 1


def test_submit_refuses_unknown_workflow_and_bad_values(run) -> None:  # type: ignore[no-untyped-def]
    """An unknown workflow or an out-of-range --set is refused before anything is queued."""
    from nomad.errors import WorkflowError

    with pytest.raises(WorkflowError, match="unknown workflow 'nope'"):
        run("submit", "nope", "--set", "prompt=x")
    with pytest.raises(WorkflowError, match="out of range"):
        run("submit", "flux_schnell", "--set", "prompt=x", "--set", "steps=999")
    assert json.loads(run("jobs", "--json")[1]) == []
    code, out = run("submit", "flux_schnell", "--set", "prompt=an astronaut", "--json")
    assert code == 0 and json.loads(out)["workflow"] == "flux_schnell"
