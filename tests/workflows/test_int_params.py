"""Integers stay integers end to end: bounds, binding, the queue, the graph sent to ComfyUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.errors import WorkflowError
from nomad.queue import open_queue
from nomad.testing.cli import run_nomad
from nomad.testing.comfy import FakeComfy
from nomad.workflows import ParamSpec, load_workflow

SEED_MAX = 18446744073709551615  # KSampler's seed max (0xffffffffffffffff)


def test_bounds_from_yaml_stay_ints() -> None:
    """The shipped seed max is the exact int, not 2**64 through a float."""
    spec = load_workflow("flux_schnell").params["seed"]
    assert spec.max == SEED_MAX and isinstance(spec.max, int)
    assert isinstance(ParamSpec(type="float", node="1", input="x", min=0.5).min, float)


def test_seed_max_binds_and_one_more_is_refused() -> None:
    """2**64-1 binds exactly (also from a CLI string); 2**64 is out of range, naming the bound."""
    wf = load_workflow("flux_schnell")
    assert wf.bind({"seed": str(SEED_MAX)}).graph["31"]["inputs"]["seed"] == SEED_MAX
    with pytest.raises(
        WorkflowError,
        match=r"seed=18446744073709551616 is out of range \(allowed 0\.\.18446744073709551615\)",
    ):
        wf.bind({"seed": SEED_MAX + 1})


def test_lossy_float_for_an_int_is_refused() -> None:
    """A float that big has lost digits (1.8446744073709552e19): refused, not rounded."""
    with pytest.raises(WorkflowError, match="not a valid int"):
        load_workflow("flux_schnell").bind({"seed": float(SEED_MAX)})


def test_nomad_run_refuses_out_of_range_seed_before_queueing(tmp_path: Path) -> None:
    """`nomad run --set seed=2**64` exits 2 and ComfyUI never sees a prompt; 2**64-1 arrives exact."""
    fc = FakeComfy.start_in_thread()
    try:
        code, _, err = run_nomad(
            tmp_path / "d",
            "run",
            "flux_schnell",
            "--set",
            f"seed={SEED_MAX + 1}",
            "--endpoint",
            fc.url,
        )
        assert code == 2 and "out of range" in err and fc.prompts == []
        code, out, err = run_nomad(
            tmp_path / "d", "run", "flux_schnell", "--set", f"seed={SEED_MAX}", "--endpoint", fc.url,
            "--out", str(tmp_path / "o"), "--json",
        )  # fmt: skip
    finally:
        fc.stop()
    assert code == 0, err
    assert json.loads(out)["params"]["seed"] == SEED_MAX
    assert fc.prompts[-1]["31"]["inputs"]["seed"] == SEED_MAX


def test_submit_refuses_out_of_range_seed(tmp_path: Path) -> None:
    """`nomad submit flux_schnell --set seed=2**64` exits 2 and nothing is queued."""
    code, _, err = run_nomad(
        tmp_path / "d", "submit", "flux_schnell", "--set", f"seed={SEED_MAX + 1}"
    )
    assert code == 2 and "out of range" in err
    queue = open_queue(None, tmp_path / "d")
    assert queue.list() == []
    queue.close()


def test_queue_keeps_big_ints_exact(queue_url: str, tmp_path: Path) -> None:
    """SQLite and PostgreSQL both hand back 2**64-1 as that int (JSON numbers, not doubles)."""
    queue = open_queue(queue_url, tmp_path)
    job = queue.enqueue("flux_schnell", {"seed": SEED_MAX, "steps": 4})
    got = queue.get(job.id).params
    queue.close()
    assert got == {"seed": SEED_MAX, "steps": 4} and isinstance(got["seed"], int)
