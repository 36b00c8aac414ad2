"""Warm-up on wake: the configured workflow runs on every ComfyUI server, timed as its own phase."""

from __future__ import annotations

from pathlib import Path

from nomad.config import load_text
from nomad.node import PhaseRecorder
from nomad.node.phases import jsonl, read_jsonl
from nomad.node.warmup import warm_up
from nomad.testing.comfy import FakeComfy

CFG = """
project: warm
node:
  warmup:
    workflow: flux_schnell
    params: {seed: 3, steps: 1}
    timeout_s: 60
"""


async def test_warmup_runs_on_every_endpoint_and_is_a_phase(tmp_path: Path) -> None:
    """Two servers (two GPUs) each get the warm-up prompt; one warmup phase event with ok=true."""
    cfg = load_text(CFG)
    rec = PhaseRecorder("w", jsonl(tmp_path / "ev.jsonl"))
    async with FakeComfy() as a, FakeComfy() as b:
        report = await warm_up(cfg, [a.url, b.url], recorder=rec)
        assert len(a.prompts) == 1 and len(b.prompts) == 1
    assert report is not None and report.ok
    (ev,) = read_jsonl(tmp_path / "ev.jsonl")
    assert (ev["phase"], ev["ok"], ev["workflow"]) == ("warmup", True, "flux_schnell")
    assert set(ev["endpoints"]) == {a.url, b.url}


async def test_failed_warmup_is_recorded_not_raised(tmp_path: Path) -> None:
    """An endpoint that is down makes the phase ok=false with the error; the wake goes on."""
    cfg = load_text(CFG)
    rec = PhaseRecorder("w", jsonl(tmp_path / "ev.jsonl"))
    async with FakeComfy() as a:
        report = await warm_up(cfg, [a.url, "http://127.0.0.1:9"], recorder=rec)
    assert report is not None and not report.ok
    assert isinstance(report.endpoints["http://127.0.0.1:9"], str)
    (ev,) = read_jsonl(tmp_path / "ev.jsonl")
    assert ev["ok"] is False


async def test_no_warmup_configured_does_nothing() -> None:
    """Without node.warmup the function returns None and touches no server."""
    assert await warm_up(load_text("project: x\n"), ["http://127.0.0.1:9"]) is None
