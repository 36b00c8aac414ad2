"""Model load is its own phase, measured from ComfyUI's per-node events; ETAs know cold from warm."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nomad.comfy import ComfyClient
from nomad.comfy._phases import PhaseClock
from nomad.queue import Job, JobStatus, open_queue
from nomad.serve.eta import EtaModel
from nomad.serve.timings import phase_timings
from nomad.testing.comfy import FakeComfy

from .test_fake_fidelity import _ckpt_graph

CLASSES = {"1": "CheckpointLoaderSimple", "2": "CLIPTextEncode", "4": "KSampler", "6": "SaveImage"}


def feed(clock: PhaseClock, events: list[tuple[str, str | None, float]]) -> PhaseClock:
    for kind, node, t in events:
        clock.observe(kind, node, CLASSES.get(node or ""), t)
    return clock


def test_cold_prompt_counts_loader_nodes_and_the_samplers_first_step_load() -> None:
    """Loader 5 s + (first step 3 s - a 1 s step) = 7 s of model load; the rest is inference."""
    clock = feed(PhaseClock(), [
        ("execution_start", None, 0.0), ("executing", "1", 0.0), ("executing", "2", 5.0),
        ("executing", "4", 6.0), ("progress", "4", 9.0), ("progress", "4", 10.0),
        ("executing", "6", 10.5), ("execution_success", None, 11.0),
    ])  # fmt: skip
    assert clock.loaded and clock.model_load == 7.0
    assert clock.node_seconds == {"1": 5.0, "2": 1.0, "4": 4.5, "6": 0.5}


def test_warm_prompt_has_no_model_load_even_with_a_slow_first_step() -> None:
    """Loaders cached (no executing for them): nothing loads, whatever the first step took."""
    clock = feed(PhaseClock(), [
        ("execution_start", None, 0.0), ("executing", "2", 0.0), ("executing", "4", 1.0),
        ("progress", "4", 4.0), ("progress", "4", 5.0), ("execution_success", None, 6.0),
    ])  # fmt: skip
    assert not clock.loaded and clock.model_load == 0.0


async def test_client_reports_model_load_on_a_cold_cache_only() -> None:
    """On FakeComfy (load_delay per file) the first run loads, a resubmit with another seed does not."""
    async with FakeComfy(load_delay=0.05) as fc, ComfyClient(fc.url) as client:
        cold = await client.run(_ckpt_graph("a.safetensors", seed=1), timeout=30)
        warm = await client.run(_ckpt_graph("a.safetensors", seed=2), timeout=30)
    assert cold.cold and cold.timings["model_load"] > 0
    assert not warm.cold and warm.timings["model_load"] == 0
    for r in (cold, warm):
        t = r.timings
        assert abs(t["model_load"] + t["inference"] - t["execution"]) < 1e-9


def _job(times: dict[str, float]) -> Job:
    return Job(id="j", workflow="w", params={}, inputs={}, status=JobStatus.SUCCEEDED, times=times)


def test_jobs_show_model_load_as_its_own_phase() -> None:
    """Stamps executing_at → loaded_at → executed_at give "model load" and "inference"."""
    t = {"queued_at": 0.0, "started_at": 1.0, "uploaded_at": 1.5, "executing_at": 2.0,
         "loaded_at": 9.0, "executed_at": 12.0, "finished_at": 13.0}  # fmt: skip
    phases = dict(phase_timings(_job(t)))
    assert phases["ComfyUI queue"] == 0.5 and phases["model load"] == 7.0
    assert phases["inference"] == 3.0
    old = {k: v for k, v in t.items() if k != "loaded_at"}  # recorded before this existed
    assert dict(phase_timings(_job(old)))["inference"] == 10.0


def test_eta_keeps_cold_and_warm_runs_apart() -> None:
    """A workflow's cold runs (models loaded) and warm runs have their own medians."""
    eta = EtaModel()
    for s in (60.0, 62.0):
        eta.add_run("flux", "RTX 4090", s, cold=True)
    for s in (5.0, 6.0, 7.0):
        eta.add_run("flux", "RTX 4090", s, cold=False)
    assert eta.run_time("flux", "RTX 4090", cold=True) == 61.0
    assert eta.run_time("flux", "RTX 4090", cold=False) == 6.0
    assert eta.run_time("flux", "RTX 4090") == 7.0  # all runs
    assert eta.run_time("flux", "H100", cold=True) == 61.0  # pooled over GPUs, same state
    assert eta.wait(1, 1, "flux", "RTX 4090", 30.0, cold_cache=True) == 91.0
    again = EtaModel.from_json(json.loads(json.dumps(eta.to_json())))
    assert again.run_time("flux", "RTX 4090", cold=False) == 6.0


async def test_worker_records_cold_then_warm(tmp_path: Path) -> None:
    """Two jobs of one workflow on one GPU: the first is a cold run, the second a warm one."""
    from nomad.serve.outputs import MemoryOutputs
    from nomad.serve.runner import ComfyRunner
    from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
    from nomad.testing.wait import eventually_async

    (tmp_path / "g.json").write_text(json.dumps(_ckpt_graph("a.safetensors")))
    queue = open_queue(None, tmp_path, lease_seconds=30)
    store = MemoryOutputs()
    pool = WorkerPool(queue, ComfyRunner(store), store, config=PoolConfig(idle_poll_seconds=0.05))
    async with FakeComfy(load_delay=0.02) as fc:
        first = queue.enqueue(str(tmp_path / "g.json"), {})
        pool.start_cluster(ClusterRuntime("c", [fc.url], gpu="fake"))
        for job in (first, queue.enqueue(str(tmp_path / "g.json"), {})):
            await eventually_async(
                lambda j=job: asyncio.to_thread(lambda: queue.get(j.id).status.finished),
                timeout=30, interval=0.02, what="the job to finish",
            )  # fmt: skip
        await pool.shutdown(1.0)
    key = f"{tmp_path / 'g.json'}@fake"
    assert len(pool.eta.run_times[f"{key}|cold"]) == 1
    assert len(pool.eta.run_times[f"{key}|warm"]) == 1
    phases = dict(phase_timings(queue.get(first.id)))
    assert phases["model load"] > 0
    queue.close()
