"""The offline core loop, end to end, on the embedded default: ``nomad quickstart``.

It runs exactly the commands a user would type — ``dev up``, ``build``,
``push``, ``plan`` — against a copy (in the data dir) of the shipped example
``examples/embedded/`` (a busybox base and three small *stand-in* weight
files, because real weights are tens of GB and need the internet), then verifies the pushed image with the registry
API (every blob present under the repository, manifest digest as recorded)
and, when installed, with ``skopeo inspect`` — a tool nomad did not write.
"""

from __future__ import annotations

import hashlib
import json
import runpy
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nomad.errors import RegistryError
from nomad.resources import examples_dir

Say = Callable[[str], None]


def example_project(data_dir: Path) -> Path:
    """A working copy of the shipped embedded example, in the data dir; returns its nomad.yaml.

    The installed package stays read-only (a wheel may sit in a root-owned
    site-packages): the config is copied next to where its stand-in weights
    are written, so its relative ``source:`` paths resolve there.
    """
    src = examples_dir() / "embedded" / "nomad.yaml"
    dest = data_dir / "quickstart"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest / "nomad.yaml")
    return dest / "nomad.yaml"


def make_standins(project: Path, say: Say) -> None:
    """Write the deterministic stand-in weights next to ``project``'s nomad.yaml (idempotent)."""
    script = examples_dir() / "embedded" / "make_weights.py"
    mod: dict[str, Any] = runpy.run_path(str(script))
    dest = project.parent / "weights"
    for name, size in mod["FILES"].items():
        path = dest / name
        if not path.exists() or path.stat().st_size != size:
            dest.mkdir(parents=True, exist_ok=True)
            path.write_bytes(mod["generate"](name, size))
    say(f"stand-in weights in {dest} (NOT real models: deterministic bytes)")


def invoke(group: click.Group, args: list[str]) -> None:
    """Run one nomad command in-process, as the user would type it."""
    group.main(args=args, prog_name="nomad", standalone_mode=False)


def verify_push(data_dir: Path, say: Say) -> dict[str, Any]:
    """Check the last push through the registry API and, if present, skopeo."""
    from nomad.images import last_pushed
    from nomad.registry._client import RegistryClient

    pushed = last_pushed(data_dir)
    if not pushed:
        raise RegistryError("nothing was pushed from this data dir")
    registry, repo, digest = pushed["registry"], pushed["repository"], pushed["digest"]
    base = registry if "://" in registry else f"http://{registry}"
    with RegistryClient(base) as client:
        raw, _media_type = client.get_manifest(repo, digest)
        if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
            raise RegistryError(f"manifest {digest} in {repo} does not match its digest")
        manifest = json.loads(raw)
        blobs = [manifest["config"], *manifest["layers"]]
        missing = [b["digest"] for b in blobs if not client.has_blob(repo, b["digest"])]
    if missing:
        raise RegistryError(f"{len(missing)} blob(s) missing from {repo}: {', '.join(missing)}")
    say(f"registry API: manifest digest ok, {len(blobs)} blobs present in {repo}")
    result = {"ref": pushed.get("ref"), "blobs": len(blobs), "skopeo": None}
    if shutil.which("skopeo"):
        host = base.split("://", 1)[1]
        proc = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{host}/{repo}@{digest}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RegistryError(f"skopeo inspect failed: {proc.stderr.strip()[:300]}")
        layers = len(json.loads(proc.stdout).get("Layers", []))
        say(f"skopeo inspect: {layers} layers, labels readable")
        result["skopeo"] = layers
    return result
