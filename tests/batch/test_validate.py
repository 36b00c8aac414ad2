"""Every bad batch config is refused at load with file:line by list/tick/run, exit 2, nothing queued."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad.queue import open_queue
from nomad.testing.cli import run_nomad

GOOD = """\
project: t
batch:
  jobs:
    - name: wallpaper
      schedule: "0 7 * * *"
      workflow: flux_schnell
      params: {prompt: lake}
"""

# (what, the job's extra/changed YAML lines, the line that must be named, text in the message)
BAD = [
    ("unknown workflow", "      workflow: flux_schnel\n", 6, "unknown workflow 'flux_schnel'"),
    ("param out of range", "      params: {prompt: lake, steps: 999}\n", 7, "steps"),
    ("unknown param", "      params: {prompt: lake, stepz: 4}\n", 7, "unknown parameter 'stepz'"),
    (
        "bad placeholder",
        "      output_key: 'w/{datex}/{time}{ext}'\n",
        8,
        "unknown placeholder {datex}",
    ),
    (
        "key not unique",
        "      output_key: 'wallpapers/{date}/{index}{ext}'\n",
        8,
        "not unique per run",
    ),
    (
        "bad latest key",
        "      latest_key: 'w/{date}/latest.json'\n",
        8,
        "unknown placeholder {date}",
    ),
    (
        "missing hook module",
        "      filters: [{check: python, entry: 'nohooks_here:check'}]\n",
        8,
        "cannot import nohooks_here",
    ),
    (
        "missing command",
        "      filters: [{check: command, argv: [no-such-checker-xyz]}]\n",
        8,
        "not found",
    ),
    (
        "graph file missing",
        "      workflow: missing.json\n",
        6,
        "graph file missing.json not found",
    ),
]


def _config(tmp_path: Path, extra: str) -> Path:
    lines = GOOD.splitlines(keepends=True)
    key = extra.split(":")[0]
    kept = [ln for ln in lines if not ln.startswith(key + ":")]
    if key.strip() in ("workflow", "params"):
        kept = [extra if ln.startswith(key + ":") else ln for ln in lines]
    else:
        kept = [*lines, extra]
    path = tmp_path / "nomad.yaml"
    path.write_text("".join(kept))
    return path


@pytest.mark.parametrize(("what", "extra", "line", "text"), BAD, ids=[b[0] for b in BAD])
def test_bad_batch_config_refused_with_file_line(
    tmp_path: Path, what: str, extra: str, line: int, text: str
) -> None:
    """`batch tick`, `run` and `list` refuse with file:line and the key; exit 2; the queue stays empty."""
    cfg = _config(tmp_path, extra)
    data = tmp_path / "data"
    for args in (["batch", "tick"], ["batch", "run", "wallpaper"], ["batch", "list"]):
        code, out, err = run_nomad(data, "-c", str(cfg), *args)
        assert code == 2, (what, args, out, err)
        assert f"{cfg}:{line}: batch.jobs.0." in err and text in err, err
        assert "nothing was queued" in err
    queue = open_queue(None, data)
    try:
        assert queue.list() == []
    finally:
        queue.close()


def test_graph_file_with_filters_needs_max_tries_one(tmp_path: Path) -> None:
    """A graph file has no seed: filters with re-runs are refused (they would repeat the result)."""
    (tmp_path / "g.json").write_text('{"1": {"class_type": "EmptyImage", "inputs": {}}}')
    cfg = tmp_path / "nomad.yaml"
    body = GOOD.replace("workflow: flux_schnell", f"workflow: {tmp_path / 'g.json'}")
    cfg.write_text(
        body.replace("      params: {prompt: lake}\n", "      filters: [{check: blank}]\n")
    )
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "batch", "tick")
    assert code == 2 and "batch.jobs.0.max_tries: a graph file has no seed parameter" in err
    cfg.write_text(cfg.read_text() + "      max_tries: 1\n")
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "batch", "list")
    assert code == 0, err


def test_duplicate_names_refused(tmp_path: Path) -> None:
    """Two batch jobs with one name are refused (the second's line is named)."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(GOOD + GOOD.split("jobs:\n", 1)[1])
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "batch", "tick")
    assert code == 2 and f"{cfg}:8: batch.jobs.1.name: duplicate batch job name 'wallpaper'" in err


def test_all_problems_listed_at_once(tmp_path: Path) -> None:
    """A config with several faults lists every one of them, each with its line."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(GOOD.replace("flux_schnell", "nope") + "      output_key: 'x/{bad}'\n")
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "batch", "list")
    assert code == 2
    assert f"{cfg}:6: batch.jobs.0.workflow" in err and f"{cfg}:8: batch.jobs.0.output_key" in err


def test_schema_errors_keep_their_line(tmp_path: Path) -> None:
    """Schema faults (bad window, unknown filter check) are config errors with file:line too."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(GOOD + "      window: '2-5'\n      filters: [{check: pretty}]\n")
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "batch", "tick")
    assert code == 2 and f"{cfg}:8: batch.jobs.0.window" in err and f"{cfg}:9:" in err


def test_good_config_runs(tmp_path: Path) -> None:
    """The good config passes: `batch run` queues exactly one job."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(GOOD)
    code, _out, err = run_nomad(
        tmp_path / "data", "-c", str(cfg), "batch", "run", "wallpaper", "--json"
    )
    assert code == 0, err
    queue = open_queue(None, tmp_path / "data")
    try:
        assert len(queue.list()) == 1
    finally:
        queue.close()


def test_serve_with_batch_refuses_a_bad_batch_config(tmp_path: Path) -> None:
    """`nomad serve --with-batch` checks the batch jobs before starting anything (exit 2, file:line)."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(GOOD.replace("flux_schnell", "nope"))
    code, _, err = run_nomad(tmp_path / "data", "-c", str(cfg), "serve", "--with-batch")
    assert code == 2 and f"{cfg}:6: batch.jobs.0.workflow: unknown workflow 'nope'" in err
    assert not (tmp_path / "data" / "queue.db").exists()
