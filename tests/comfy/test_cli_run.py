"""`nomad run` and `nomad workflows` through Click's CliRunner, against FakeComfy in a thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomad.testing.cli import run_nomad
from nomad.testing.comfy import FakeComfy


@pytest.fixture
def fake() -> Iterator[FakeComfy]:
    fc = FakeComfy.start_in_thread()
    yield fc
    fc.stop()


def _nomad(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run the real entry point (errors → exit codes) in-process; returns (code, out, err)."""
    return run_nomad(tmp_path / "data", *args)


def test_run_saves_outputs_and_prints_json(fake: FakeComfy, tmp_path: Path) -> None:
    """`nomad run --json` binds values, runs, saves the PNG and reports params/timings/paths."""
    code, out, err = _nomad(
        tmp_path,
        "run",
        "flux_schnell",
        "--set",
        "seed=5",
        "--set",
        "ar=16:9",
        "--endpoint",
        fake.url,
        "--out",
        str(tmp_path / "o"),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["params"]["seed"] == 5 and summary["params"]["width"] == 1360
    (path,) = summary["outputs"]
    assert Path(path).read_bytes().startswith(b"\x89PNG") and path.endswith("flux_schnell-5-0.png")
    assert set(summary["timings"]) >= {"upload", "queue_wait", "execution", "download"}


def test_run_human_output_with_image(fake: FakeComfy, tmp_path: Path) -> None:
    """An edit run uploads --image and prints the phase timings and the output path."""
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\ncat")
    code, out, err = _nomad(
        tmp_path,
        "run",
        "qwen_image_edit",
        "--image",
        str(image),
        "--set",
        "prompt=make it snow",
        "--endpoint",
        fake.url,
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 0, err
    assert (
        "model_load" in out and "inference" in out and "→" in out and b"\x89PNGcat"[4:] in next(iter(fake.uploads.values()))
    )


def test_run_errors_exit_codes(fake: FakeComfy, tmp_path: Path) -> None:
    """Bad params exit 2 naming the param; no cluster and no --endpoint says so."""
    code, _, err = _nomad(
        tmp_path, "run", "flux_schnell", "--set", "steps=99", "--endpoint", fake.url
    )
    assert code == 2 and "steps=99 is out of range (allowed 1..12)" in err
    code, _, err = _nomad(tmp_path, "run", "flux_schnell")
    assert code == 2 and "no running cluster; pass --endpoint" in err
    code, _, err = _nomad(tmp_path, "run", "nope", "--endpoint", fake.url)
    assert code == 2 and "unknown workflow 'nope'" in err


def test_run_missing_model_exit_6(tmp_path: Path) -> None:
    """A ComfyUI without the model file gives exit 6 and names the file."""
    fc = FakeComfy.start_in_thread(models={})
    try:
        code, _, err = _nomad(tmp_path, "run", "sd35_large", "--endpoint", fc.url)
    finally:
        fc.stop()
    assert code == 6 and "sd3.5_large_fp8_scaled.safetensors" in err


def test_workflows_list_show_validate(tmp_path: Path) -> None:
    """list/show emit JSON; validate accepts the built-ins and rejects a broken binding."""
    code, out, _ = _nomad(tmp_path, "workflows", "list", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} >= {"flux_schnell", "wan22_t2v"}
    code, out, _ = _nomad(tmp_path, "workflows", "show", "wan22_t2v", "--json")
    assert code == 0 and json.loads(out)["output"] == "video"
    root = Path(__file__).resolve().parents[2] / "workflows"
    code, out, _ = _nomad(tmp_path, "workflows", "validate", str(root))
    assert code == 0 and out.count("ok ") == 5
    (tmp_path / "b.json").write_text('{"1": {"class_type": "SaveImage", "inputs": {}}}')
    (tmp_path / "b.yaml").write_text("name: b\nparams:\n  x: {type: int, node: '1', input: y}\n")
    code, out, _ = _nomad(tmp_path, "workflows", "validate", str(tmp_path / "b.yaml"))
    assert code == 2 and "node 1 (SaveImage) has no input 'y'" in out


@pytest.mark.parametrize(
    "cmd",
    [
        ["run"],
        ["workflows"],
        ["workflows", "show"],
        ["workflows", "validate"],
        ["workflows", "import"],
        ["bench"],
    ],
)
def test_help(cmd: list[str], tmp_path: Path) -> None:
    """--help works for every command of this area."""
    code, out, _ = _nomad(tmp_path, *cmd, "--help")
    assert code == 0 and "Usage" in out
