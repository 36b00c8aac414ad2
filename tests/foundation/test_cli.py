"""The real `nomad` CLI: help everywhere, config errors with file:line and exit 2, init, doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from nomad.cli.main import COMMANDS, cli
from nomad.config import load_config
from nomad.dev.stack import StackInfo


def _nomad(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    exe = Path(sys.executable).parent / "nomad"
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=120, check=False)  # fmt: skip


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean cwd with no nomad.yaml and no NOMAD_* config variables."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("NOMAD_")]:
        monkeypatch.delenv(var)
    yield tmp_path


def test_top_level_help_lists_every_command() -> None:
    """`nomad --help` exits 0 and names every registered command."""
    proc = _nomad("--help")
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


def test_version_names_the_installed_distribution() -> None:
    """`nomad --version` exits 0 with the version of the installed nomad-comfy distribution."""
    import importlib.metadata

    proc = _nomad("--version")
    assert proc.returncode == 0, proc.stderr
    assert importlib.metadata.version("nomad-comfy") in proc.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_subcommand_help(name: str) -> None:
    """`nomad <command> --help` works for every registered command."""
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize("sub", ["up", "down", "status"])
def test_dev_subcommand_help(sub: str) -> None:
    """`nomad dev <sub> --help` works."""
    result = CliRunner().invoke(cli, ["dev", sub, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("project: x\nstorage:\n  bukcet: y\n", 3, "storage.bukcet: unknown key"),
        ("project: x\ninfra:\n  gpu_count: many\n", 3, "infra.gpu_count"),
        ("project: x\ninfra:\n  gpus: [a\n  spot: true\n", 4, "invalid YAML"),
    ],
    ids=["typo", "wrong-type", "invalid-yaml"],
)
def test_config_errors_one_line_with_file_line_exit_2(
    in_tmp: Path, text: str, line: int, needle: str
) -> None:
    """A bad nomad.yaml gives `error: nomad.yaml:LINE: …` on stderr, exit 2, no traceback."""
    (in_tmp / "nomad.yaml").write_text(text)
    proc = _nomad("doctor", cwd=in_tmp)
    assert proc.returncode == 2, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"error: {in_tmp / 'nomad.yaml'}:{line}:") or first.startswith(
        f"error: nomad.yaml:{line}:"
    ), first
    assert needle in first
    assert "Traceback" not in proc.stderr


def test_init_writes_a_config_that_loads(in_tmp: Path) -> None:
    """`nomad init DIR` writes nomad.yaml that load_config accepts, with both model sets."""
    proc = _nomad("init", str(in_tmp / "proj"))
    assert proc.returncode == 0, proc.stderr
    cfg = load_config(in_tmp / "proj" / "nomad.yaml", environ={})
    assert set(cfg.models) == {"flux_schnell", "qwen_image_edit"}
    assert cfg.image.model_sets == ["flux_schnell", "qwen_image_edit"]


def test_init_refuses_to_overwrite_without_force(in_tmp: Path) -> None:
    """A second `nomad init` exits 2 and keeps the file; --force replaces it."""
    target = in_tmp / "nomad.yaml"
    target.write_text("project: mine\n")
    proc = _nomad("init", str(in_tmp))
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "--force" in proc.stderr
    assert target.read_text() == "project: mine\n"
    assert _nomad("init", "--force", str(in_tmp)).returncode == 0
    assert load_config(target, environ={}).project == "comfy-flux-qwen"


def test_init_model_urls_come_from_official_templates() -> None:
    """Every model source and sha256 in the example appears in the installed template package."""
    from importlib import resources

    from nomad.config import load_text
    from nomad.dev.init import example_text

    pkg = resources.files("comfyui_workflow_templates_json") / "templates"
    corpus = "".join(
        p.read_text(encoding="utf-8") for p in pkg.iterdir() if p.name.endswith(".json")
    )
    cfg = load_text(example_text())
    files = [f for fs in cfg.models.values() for f in fs]
    assert len(files) == 8
    for f in files:
        assert json.dumps(f.source)[1:-1] in corpus, f.source
        assert f.dest.rsplit("/", 1)[1] in corpus
        if f.sha256:
            assert f.sha256 in corpus


def test_doctor_reports_stack_healthy(stack: StackInfo, in_tmp: Path) -> None:
    """On the running stack, doctor --json says s3, registry and database are ok."""
    proc = _nomad("--data-dir", str(stack.data_dir), "doctor", "--json", cwd=in_tmp)
    report = json.loads(proc.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    for name in ("s3", "registry", "database", "weed", "docker-registry"):
        assert by_name[name]["level"] == "ok", by_name[name]
    assert stack.registry_url in by_name["registry"]["detail"]
    assert stack.secret_key not in proc.stdout
    assert proc.returncode == (0 if report["ok"] else 1)


def test_doctor_fails_s3_with_bad_keys(stack: StackInfo, in_tmp: Path) -> None:
    """Configured S3 with wrong keys ⇒ doctor's s3 line FAILs, exit 1, secret not shown."""
    env = {
        "NOMAD_S3_ENDPOINT": stack.s3_endpoint,
        "NOMAD_S3_ACCESS_KEY_ID": "WRONGKEY",
        "NOMAD_S3_SECRET_ACCESS_KEY": "not-the-secret-123",
    }
    proc = _nomad("--data-dir", str(stack.data_dir), "doctor", "--json", cwd=in_tmp, env=env)
    assert proc.returncode == 1
    s3 = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "s3")
    assert s3["level"] == "fail" and s3["fix"]
    assert "not-the-secret-123" not in proc.stdout + proc.stderr


def test_dev_status_json_through_cli(stack: StackInfo) -> None:
    """`nomad dev status --json` reports both components healthy with their URLs, exit 0."""
    proc = _nomad("--data-dir", str(stack.data_dir), "dev", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["running"] is True
    urls = {c["name"]: c["url"] for c in data["components"]}
    assert urls == {"s3": stack.s3_endpoint, "registry": stack.registry_url}


def test_dev_status_down_exits_1(tmp_path: Path) -> None:
    """`nomad dev status` on a data dir with no stack exits 1."""
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), "dev", "status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["running"] is False
