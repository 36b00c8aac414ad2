"""`nomad build`, `nomad push`, `nomad registry` through the CLI (the README's offline demo path)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nomad.cli.main import cli
from nomad.resources import examples_dir
from nomad.testing.cli import run_nomad

EXAMPLE = examples_dir() / "embedded"


@pytest.mark.parametrize(
    "args",
    [
        ["build"],
        ["push"],
        ["registry"],
        ["registry", "config"],
        ["registry", "check"],
        ["registry", "verify"],
        ["registry", "purge-uploads"],
    ],
)
def test_help(args: list[str]) -> None:
    """Every images command answers --help."""
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def _demo(tmp_path: Path) -> Path:
    """Copy the embedded example and generate its stand-in weights there."""
    demo = tmp_path / "demo"
    shutil.copytree(EXAMPLE, demo, ignore=shutil.ignore_patterns("weights"))
    subprocess.run([sys.executable, str(demo / "make_weights.py")], check=True, capture_output=True)
    return demo


def test_example_builds_and_pushes_to_the_embedded_stack(stack: Any, tmp_path: Path) -> None:
    """examples/embedded: build then push via the CLI; the ref lands in last_push.json."""
    demo = _demo(tmp_path)
    base = ["-c", str(demo / "nomad.yaml"), "--data-dir", str(stack.data_dir)]
    env = {"NOMAD_CACHE_DIR": str(tmp_path / "cache")}
    built = CliRunner().invoke(cli, [*base, "build", "--json"], env=env)
    assert built.exit_code == 0, built.output
    doc = json.loads(built.output)
    assert sum(1 for x in doc["layers"] if x["what"].startswith("nomad: model")) == 3
    pushed = CliRunner().invoke(cli, [*base, "push", "--json"], env=env)
    assert pushed.exit_code == 0, pushed.output
    res = json.loads(pushed.output)
    assert res["digest"] == doc["digest"]
    assert res["ref"] == f"{stack.registry_url.split('://')[1]}/embedded-demo@{doc['digest']}"
    last = json.loads((stack.data_dir / "images" / "last_push.json").read_text())
    assert last["ref"] == res["ref"]
    again = CliRunner().invoke(cli, [*base, "push", "--json"], env=env)
    assert json.loads(again.output)["bytes_sent"] == 0


def test_registry_config_never_prints_keys(tmp_path: Path) -> None:
    """The printed distribution config has no keys; --out writes them to a 0600 file."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text(
        "storage:\n  endpoint_url: http://127.0.0.1:1\n  access_key_id: AKIAEXAMPLE\n"
        "  secret_access_key: SUPERSECRET\n"
    )
    out = CliRunner().invoke(cli, ["-c", str(cfg), "registry", "config", "--provider", "r2"])
    assert (
        out.exit_code == 0 and "SUPERSECRET" not in out.output and "AKIAEXAMPLE" not in out.output
    )
    assert "bucket: registry" in out.output
    target = tmp_path / "reg.yml"
    wrote = CliRunner().invoke(cli, ["-c", str(cfg), "registry", "config", "--out", str(target)])
    assert wrote.exit_code == 0 and "SUPERSECRET" not in wrote.output
    assert "SUPERSECRET" in target.read_text() and (target.stat().st_mode & 0o777) == 0o600


def test_registry_check_against_the_stack(stack: Any, tmp_path: Path) -> None:
    """`nomad registry check` reports the embedded registry and its bucket as reachable."""
    cfg = tmp_path / "nomad.yaml"
    cfg.write_text("project: chk\n")
    out = CliRunner().invoke(
        cli, ["-c", str(cfg), "--data-dir", str(stack.data_dir), "registry", "check", "--json"]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["registry"].startswith("ok") and report["bucket"].startswith("ok registry")


def test_push_with_ref_honours_direct_s3_and_says_which_path(stack: Any, tmp_path: Path) -> None:
    """`push REPO:TAG --direct-s3` writes through S3 and says so; --api says the API; a foreign
    registry with --direct-s3 is refused (exit 2) before anything moves."""
    demo = _demo(tmp_path)
    base = ["-c", str(demo / "nomad.yaml"), "--data-dir", str(stack.data_dir)]
    env = {"NOMAD_CACHE_DIR": str(tmp_path / "cache")}
    assert CliRunner().invoke(cli, [*base, "build", "--json"], env=env).exit_code == 0
    direct = CliRunner().invoke(cli, [*base, "push", "ref/direct:t9", "--direct-s3"], env=env)
    assert direct.exit_code == 0, direct.output
    assert "via direct S3 writes" in direct.output and "/ref/direct@sha256:" in direct.output
    doc = json.loads(
        CliRunner().invoke(cli, [*base, "push", "ref/api:t9", "--api", "--json"], env=env).output
    )
    assert doc["path"] == "api" and doc["uploaded_via"]["direct-s3"] == 0
    code, _, err = run_nomad(
        stack.data_dir, "-c", str(demo / "nomad.yaml"), "push", "127.0.0.1:9/o/x:t", "--direct-s3"
    )
    assert code == 2 and "not the configured registry" in err
