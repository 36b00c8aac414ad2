"""Baked vs fetched per cloud, cold-start phase events, and the `nomad node` CLI surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nomad.errors import ConfigError
from nomad.node import BAKED, FETCHED, PhaseRecorder, weights_mode_for
from nomad.node.phases import jsonl, read_jsonl
from nomad.testing.cli import run_nomad


def test_auto_mode_fetches_only_where_nomad_has_the_host() -> None:
    """VM clouds fetch; any pod cloud (or 'any cloud') bakes; forcing fetched on RunPod is refused."""
    assert weights_mode_for(["aws", "lambda"]) == FETCHED
    assert weights_mode_for(["aws", "runpod"]) == BAKED
    assert weights_mode_for([]) == BAKED
    assert weights_mode_for(["vast"], "baked") == BAKED
    with pytest.raises(ConfigError, match="image is the pod"):
        weights_mode_for(["runpod"], "fetched")
    with pytest.raises(ConfigError, match="unknown weights mode"):
        weights_mode_for(["aws"], "lazy")


def test_phases_are_timed_by_the_injected_clock_and_written_as_json_lines(tmp_path: Path) -> None:
    """Each phase becomes one event with its seconds; a failing phase is recorded ok=false."""
    ticks = iter([10.0, 12.5, 20.0, 21.0])
    rec = PhaseRecorder("w1", jsonl(tmp_path / "ev.jsonl"), clock=lambda: next(ticks))
    with rec.phase("weights_fetch") as extra:
        extra["bytes_moved"] = 0
    with pytest.raises(RuntimeError), rec.phase("comfy_start"):
        raise RuntimeError("boom")
    rec.record("provision", 42.0, cloud="aws")
    events = read_jsonl(tmp_path / "ev.jsonl")
    assert [(e["phase"], e["seconds"], e["ok"]) for e in events] == [
        ("weights_fetch", 2.5, True),
        ("comfy_start", 1.0, False),
        ("provision", 42.0, True),
    ]
    assert events[0]["bytes_moved"] == 0 and events[1]["error"] == "RuntimeError"
    with pytest.raises(ValueError, match="unknown cold-start phase"):
        rec.record("coffee", 1.0)


def test_node_help_and_bad_cache_limit(tmp_path: Path) -> None:
    """`nomad node pull --help` documents the command; a bad --cache-limit is a usage error (2)."""
    code, out, _ = run_nomad(tmp_path, "node", "pull", "--help")
    assert code == 0 and "--cache-limit" in out and "resumes" in out
    code, _, err = run_nomad(tmp_path, "node", "pull", "127.0.0.1:1/x:t", "--cache-limit", "lots")
    assert code == 2 and "bad size" in err
    code, out, _ = run_nomad(tmp_path, "node", "cache", "--cache-dir", str(tmp_path / "c"))
    assert code == 0 and "0 weights" in out


def test_s3_mode_without_keys_says_which_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--from s3 with no read-only keys in the environment is a one-line usage error."""
    monkeypatch.delenv("NOMAD_S3_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("NOMAD_S3_SECRET_ACCESS_KEY", raising=False)
    code, _, err = run_nomad(tmp_path, "node", "pull", "127.0.0.1:1/x:t", "--from", "s3")
    assert code == 2 and "NOMAD_S3_ACCESS_KEY_ID" in err


def test_registry_config_redirects_blob_gets_where_clients_can_reach_s3() -> None:
    """https endpoints get storage redirect on (pulls read S3 directly); plain http off unless asked."""
    from nomad.registry._config import distribution_config, validate_config

    def disabled(cfg: dict[str, Any]) -> bool:
        return bool(cfg["storage"]["redirect"]["disable"])

    aws = distribution_config(bucket="b", endpoint=None, region="us-east-1")
    local = distribution_config(bucket="b", endpoint="http://127.0.0.1:8333", region="us-east-1")
    forced = distribution_config(
        bucket="b", endpoint="http://127.0.0.1:8333", region="us-east-1", redirect=True
    )
    assert (disabled(aws), disabled(local), disabled(forced)) == (False, True, False)
    assert validate_config(aws) == [] and validate_config(local) == []
    assert any("cannot reach http://127.0.0.1:8333" in p for p in validate_config(forced))
