"""Blob integrity end to end on the real stack: a flipped byte in S3 is found, named, repaired."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.config.schema import NomadConfig
from nomad.storage import Storage
from nomad.testing.cli import run_nomad

Project = Callable[..., tuple[NomadConfig, Path]]


def _flip(stack: Any, digest: str) -> None:
    """Flip one byte in the middle of the registry's stored copy of ``digest`` (same size)."""
    store = Storage(stack.s3_settings(stack.registry_bucket))
    hexd = digest.split(":", 1)[1]
    key = f"docker/registry/v2/blobs/sha256/{hexd[:2]}/{hexd}/data"
    data = bytearray(store.get_bytes(key))
    data[len(data) // 2] ^= 0x01
    store.put_bytes(key, bytes(data))


def test_flipped_byte_is_named_repaired_and_skopeo_copies(
    stack: Any,
    project: Project,
    tmp_path: Path,
    weights: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verify names the corrupt blob (exit 4) although HEAD says 200; --repair rewrites it from
    the layout; skopeo then copies cleanly; later, push --verify into a new repo repairs too."""
    weights["unet.safetensors"].write_bytes(os.urandom(2 * 1024 * 1024))  # bytes no one shares
    _cfg, cdir = project()
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    conf = ("-c", str(cdir / "nomad.yaml"))
    code, out, err = run_nomad(stack.data_dir, *conf, "build", "--json")
    assert code == 0, err
    built = json.loads(out)
    unet = next(x for x in built["layers"] if "unet" in x["what"])
    code, _, err = run_nomad(stack.data_dir, *conf, "push", "it/flip:t1", "--api")
    assert code == 0, err
    _flip(stack, unet["digest"])

    code, out, err = run_nomad(stack.data_dir, *conf, "registry", "verify", "it/flip:t1")
    assert code == 4 and unet["digest"] in err and "--repair" in err
    assert f"corrupt   {unet['digest']}" in out
    code, out, err = run_nomad(
        stack.data_dir, *conf, "registry", "verify", "it/flip:t1", "--repair"
    )
    assert code == 0, err
    assert f"repaired  {unet['digest']}" in out
    if shutil.which("skopeo"):
        host = stack.registry_url.split("://", 1)[1]
        subprocess.run(
            ["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
             f"docker://{host}/it/flip:t1", f"oci:{tmp_path / 'copy'}:t1"],
            check=True, capture_output=True,
        )  # fmt: skip

    _flip(stack, unet["digest"])
    code, out, err = run_nomad(
        stack.data_dir, *conf, "push", "it/flip-again:t1", "--verify", "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["blobs"]["uploaded"] == 0  # nothing was re-sent: the bad copy was "mounted"...
    fixed = [b for b in doc["verify"]["blobs"] if b["repaired"]]
    assert [b["digest"] for b in fixed] == [unet["digest"]]  # ...and --verify caught it
    code, _, err = run_nomad(stack.data_dir, *conf, "registry", "verify", "it/flip-again:t1")
    assert code == 0, err
