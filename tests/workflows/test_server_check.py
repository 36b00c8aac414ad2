"""Graphs and bindings checked against a server's /object_info before anything is queued.

The schema is the /object_info subset saved from a real ComfyUI 0.28 (CPU, no
weights: model lists empty) in tests/workflows/data; where a test needs a
model "installed" it adds that file name to the loader's list.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from nomad.comfy._object_info import check_graph
from nomad.queue import JobStatus, open_queue
from nomad.testing.cli import run_nomad
from nomad.testing.comfy import FakeComfy
from nomad.workflows import builtin_dir

DATA = Path(__file__).parent / "data"
FLUX_FILES = {
    ("UNETLoader", "unet_name"): "flux1-schnell.safetensors",
    ("DualCLIPLoader", "clip_name1"): "clip_l.safetensors",
    ("DualCLIPLoader", "clip_name2"): "t5xxl_fp16.safetensors",
    ("VAELoader", "vae_name"): "ae.safetensors",
}


def real_info(installed: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """The saved real /object_info subset, with ``installed`` model files added to the lists."""
    info = json.loads((DATA / "object_info_subset.json").read_text())
    for (cls, name), file in (installed or {}).items():
        choices = info[cls]["input"]["required"][name][0]
        choices.append(file)
    return info


def bad_graph() -> dict[str, Any]:
    """flux_schnell with one of each mistake: unknown class, unknown input, missing model, range."""
    graph = json.loads((builtin_dir() / "flux_schnell.json").read_text())
    graph["38"]["inputs"]["unet_name"] = "flux1-dev.safetensors"  # not installed
    graph["31"]["inputs"]["steps"] = 0  # KSampler steps min is 1
    graph["31"]["inputs"]["seed"] = 18446744073709551616  # max is 2**64-1
    graph["27"]["inputs"]["widht"] = 512  # typo
    graph["50"] = {"class_type": "FancyUpscaler", "inputs": {"image": ["8", 0]}}
    return graph


def test_check_graph_names_node_and_input_for_each_problem() -> None:
    """Unknown class, unknown input, model not in the list, out of range: one line each."""
    lines = sorted(str(p) for p in check_graph(bad_graph(), real_info(FLUX_FILES)))
    assert lines == [
        "node 27 (EmptySD3LatentImage) input widht: EmptySD3LatentImage has no input 'widht' "
        "(it has: batch_size, height, width)",
        "node 31 (KSampler) input seed: 18446744073709551616 is above the maximum 18446744073709551615",
        "node 31 (KSampler) input steps: 0 is below the minimum 1",
        "node 38 (UNETLoader) input unet_name: model file 'flux1-dev.safetensors' is not on this "
        "ComfyUI (has: 'flux1-schnell.safetensors')",
        "node 50 (FancyUpscaler): unknown node class on this ComfyUI (a custom node not installed?)",
    ]


def test_shipped_workflows_pass_when_their_models_are_there() -> None:
    """Every built-in graph passes the real schema apart from model files (the server has none)."""
    info = real_info()
    for path in sorted(builtin_dir().glob("*.json")):
        graph = json.loads(path.read_text())
        assert check_graph(graph, info, check_models=False) == [], path.name
        assert {p.kind for p in check_graph(graph, info)} == {"missing_model"}, path.name


def test_links_slots_types_and_new_combo_shape() -> None:
    """A link to a missing node or slot, a type mismatch and a ["COMBO", {options}] choice."""
    info = {
        "Src": {"input": {}, "output": ["IMAGE"], "output_node": False},
        "Sink": {
            "input": {
                "required": {
                    "images": ["IMAGE"],
                    "mode": ["COMBO", {"options": ["a", "b"]}],
                    "strength": ["FLOAT", {"min": 0.0, "max": 1.0}],
                },
                "optional": {"mask": ["MASK"]},
            },
            "output": [],
            "output_node": True,
        },
    }
    graph = {
        "1": {"class_type": "Src", "inputs": {}},
        "2": {"class_type": "Sink", "inputs": {"images": ["1", 1], "mode": "c", "strength": 0.5}},
        "3": {"class_type": "Sink", "inputs": {"images": ["9", 0], "mode": "a", "strength": 2}},
        "4": {
            "class_type": "Sink",
            "inputs": {"images": ["1", 0], "mode": "a", "strength": 1, "mask": ["1", 0]},
        },
    }
    kinds = sorted((p.node, p.input, p.kind) for p in check_graph(graph, info))
    assert kinds == [
        ("2", "images", "bad_link"),
        ("2", "mode", "not_in_list"),
        ("3", "images", "bad_link"),
        ("3", "strength", "out_of_range"),
        ("4", "mask", "type_mismatch"),
    ]


def test_validate_endpoint_against_a_server_serving_real_object_info(tmp_path: Path) -> None:
    """`nomad workflows validate GRAPH --endpoint URL`: each problem one line, exit 2, nothing queued."""
    graph_file = tmp_path / "bad.json"
    graph_file.write_text(json.dumps(bad_graph()))
    fc = FakeComfy.start_in_thread(object_info=real_info(FLUX_FILES))
    try:
        code, out, err = run_nomad(
            tmp_path / "d", "workflows", "validate", str(graph_file), "--endpoint", fc.url
        )
        ok_code, ok_out, ok_err = run_nomad(
            tmp_path / "d", "workflows", "validate", str(builtin_dir() / "flux_schnell.yaml"),
            "--endpoint", fc.url,
        )  # fmt: skip
    finally:
        fc.stop()
    assert code == 2 and "1 of 1 workflow(s) invalid" in err
    lines = [line.strip() for line in out.splitlines()[1:]]
    assert len(lines) == 5
    assert any(line.startswith("node 50 (FancyUpscaler): unknown node class") for line in lines)
    assert any(line.startswith("node 27 (EmptySD3LatentImage) input widht:") for line in lines)
    assert any(
        line.startswith("node 38 (UNETLoader) input unet_name: model file") for line in lines
    )
    assert any(line.startswith("node 31 (KSampler) input steps: 0 is below") for line in lines)
    assert fc.prompts == []
    assert ok_code == 0, ok_out + ok_err


def test_validate_binding_bounds_beyond_the_server(tmp_path: Path) -> None:
    """A param allowing more than the node takes is reported against the saved schema."""
    info_file = tmp_path / "object_info.json"
    info = real_info()
    info["EmptySD3LatentImage"]["input"]["required"]["width"][1]["max"] = 1024
    info_file.write_text(json.dumps(info))
    code, out, _ = run_nomad(
        tmp_path / "d", "workflows", "validate", str(builtin_dir() / "flux_schnell.yaml"),
        "--object-info", str(info_file), "--no-models",
    )  # fmt: skip
    assert code == 2
    assert "param width: allows 2048 but node 27 input width takes at most 1024" in out


TEMPLATES = [
    "flux_schnell_full_text_to_image",
    "image_qwen_image_edit_2509",
    "video_wan2_2_14B_t2v",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_import_real_template_gives_a_valid_graph_and_binding(
    template: str, tmp_path: Path
) -> None:
    """`nomad workflows import` on an official UI template (subgraphs too) validates against the saved schema."""
    pkg = pytest.importorskip("comfyui_workflow_templates_json")
    ui = Path(pkg.__file__).parent / "templates" / f"{template}.json"
    info_file = tmp_path / "object_info.json"
    info_file.write_text(json.dumps(real_info()))
    code, out, err = run_nomad(
        tmp_path / "d", "workflows", "import", str(ui), "--object-info", str(info_file),
        "--out", str(tmp_path / "wf"), "--name", "imported", "--json",
    )  # fmt: skip
    assert code == 0, out + err
    report = json.loads(out)
    assert report["problems"] == [] and {"prompt", "seed"} <= set(report["params"])
    assert report["models"]  # from the template's properties.models
    code, out, err = run_nomad(
        tmp_path / "d", "workflows", "validate", report["binding"], "--object-info", str(info_file),
        "--no-models",
    )  # fmt: skip
    assert code == 0, out + err
    from nomad.workflows import load_workflow_file

    wf = load_workflow_file(report["binding"])
    bound = wf.bind(
        {"prompt": "a lighthouse", "seed": 5},
        images={"image": b"x"} if "image" in wf.params else None,
    )
    assert check_graph(bound.graph, real_info(), check_models=False) == []
    assert all(m.url for m in wf.models)


def test_import_refuses_to_overwrite(tmp_path: Path) -> None:
    """A second import to the same name needs --force; nothing is half-written."""
    pkg = pytest.importorskip("comfyui_workflow_templates_json")
    ui = Path(pkg.__file__).parent / "templates" / "flux_schnell_full_text_to_image.json"
    info_file = tmp_path / "oi.json"
    info_file.write_text(json.dumps(real_info()))
    args = [
        "workflows",
        "import",
        str(ui),
        "--object-info",
        str(info_file),
        "--out",
        str(tmp_path / "wf"),
    ]
    assert run_nomad(tmp_path / "d", *args)[0] == 0
    code, _, err = run_nomad(tmp_path / "d", *args)
    assert code == 2 and "exists" in err and "--force" in err
    assert run_nomad(tmp_path / "d", *args, "--force")[0] == 0


async def test_serve_fails_a_job_that_can_only_fail_without_queueing_it(tmp_path: Path) -> None:
    """A job whose model is not on the cluster fails at once (no attempt retried, no /prompt);
    /object_info is read once per wake, not per job."""
    from nomad.serve.outputs import MemoryOutputs
    from nomad.serve.runner import ComfyRunner
    from nomad.serve.worker import ClusterRuntime, PoolConfig, WorkerPool
    from nomad.testing.wait import eventually_async

    dev_graph = json.loads((builtin_dir() / "flux_schnell.json").read_text())
    dev_graph["38"]["inputs"]["unet_name"] = "flux1-dev.safetensors"
    (tmp_path / "dev.json").write_text(json.dumps(dev_graph))
    queue = open_queue(None, tmp_path, lease_seconds=30)
    store = MemoryOutputs()
    cfg = PoolConfig(lease_seconds=30, heartbeat_seconds=0.05, idle_poll_seconds=0.05)
    pool = WorkerPool(queue, ComfyRunner(store), store, config=cfg)

    async def finished(job_id: str) -> Any:
        return await eventually_async(
            lambda: asyncio.to_thread(lambda: queue.get(job_id).status.finished),
            timeout=30, interval=0.02, what=f"job {job_id} to finish",
        )  # fmt: skip

    async with FakeComfy(object_info=real_info(FLUX_FILES)) as fc:
        good = queue.enqueue("flux_schnell", {"seed": 1})
        bad = queue.enqueue(str(tmp_path / "dev.json"), {})
        rt = ClusterRuntime("c", [fc.url], gpu="fake")
        pool.start_cluster(rt)
        await finished(good.id)
        await finished(bad.id)
        assert fc.object_info_requests == 1
        await pool.stop_cluster("c")
        pool.start_cluster(rt)  # the next wake reads the schema again
        again = queue.enqueue("flux_schnell", {"seed": 2})
        await finished(again.id)
        await pool.shutdown(1.0)
    failed = queue.get(bad.id)
    assert queue.get(good.id).status is JobStatus.SUCCEEDED
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert "node 38 (UNETLoader) input unet_name: model file 'flux1-dev.safetensors'" in (
        failed.error or ""
    )
    assert [g["38"]["inputs"]["unet_name"] for g in fc.prompts] == ["flux1-schnell.safetensors"] * 2
    assert fc.object_info_requests == 2
    queue.close()
