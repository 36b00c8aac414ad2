"""Job ids accept the short prefix front doors show (the bot shows 8 characters) everywhere in the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.errors import JobNotFound, UsageError
from nomad.queue import open_queue
from nomad.serve.jobs import find_job
from nomad.testing.cli import run_nomad


def test_jobs_show_and_cancel_take_the_short_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nomad jobs show 2070bb5a` and `jobs cancel` find the job by the 8-character id the bot shows."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NOMAD_CONFIG", raising=False)
    data = tmp_path / "data"
    queue = open_queue(None, data)
    try:
        job = queue.enqueue("flux_schnell", {"prompt": "a cat"})
    finally:
        queue.close()
    code, out, err = run_nomad(data, "jobs", "show", job.id[:8], "--json")
    assert code == 0, err
    assert json.loads(out)["id"] == job.id
    code, out, err = run_nomad(data, "jobs", "cancel", job.id[:8], "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    code, out, err = run_nomad(data, "jobs", "show", "ffffffff")
    assert code == 7 and "no job 'ffffffff'" in err


def test_ambiguous_and_too_short_prefixes(tmp_path: Path) -> None:
    """A prefix matching two jobs is a usage error naming both; under 4 characters is refused."""
    queue = open_queue(None, tmp_path)
    try:
        jobs = [queue.enqueue("flux_schnell", {"prompt": str(i)}) for i in range(3)]
        assert find_job(queue, jobs[1].id).id == jobs[1].id
        assert find_job(queue, jobs[1].id[:8].upper()).id == jobs[1].id
        with pytest.raises(JobNotFound) as short:
            find_job(queue, jobs[1].id[:3])
        assert "at least 4" in str(short.value.hint)
    finally:
        queue.close()


def test_ambiguous_prefix_names_the_candidates() -> None:
    """Two jobs sharing the prefix: a usage error listing both ids (never a guess)."""
    from nomad.queue.base import Job

    class TwoJobs:
        """Only what find_job reads: get (exact) and list (newest first)."""

        def __init__(self) -> None:
            self.jobs = [Job(id="abcd11112222", workflow="w"), Job(id="abcd33334444", workflow="w")]

        def get(self, job_id: str) -> Job:
            raise JobNotFound(job_id)

        def list(self, limit: int = 50) -> list[Job]:
            return self.jobs

    with pytest.raises(UsageError, match="abcd11112222, abcd33334444"):
        find_job(TwoJobs(), "abcd")  # type: ignore[arg-type]
