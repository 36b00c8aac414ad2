"""Custom nodes as one deterministic image layer: source at a pinned commit + its pip deps.

``image.comfyui.custom_nodes`` entries are ``GIT_URL@REV`` (any URL or path
``git clone`` takes; REV a commit, tag or branch — the resolved commit is
recorded). For each: the tracked files at that commit go to
``custom_nodes/<name>/`` under the ComfyUI root, and its
``requirements.txt`` is installed with pip into one shared folder
(``PYTHONPATH`` points there), resolved against ``constraints`` (the
base's torch & co., so a node never drags in a second torch). The lock —
commits and the exact ``name==version`` pip chose — goes into the layer
and back to the caller.

Same inputs ⇒ same bytes ⇒ same layer digest on any machine: files in
byte order, mtime 0, root-owned, modes from git; pip runs with
``--no-compile`` (no ``.pyc``) and the installer's machine-specific files
(``RECORD`` paths are relative; ``direct_url.json``, ``INSTALLER`` and
console scripts, whose shebang names the building machine's python, are
dropped).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nomad.errors import BuildError
from nomad.images._tar import Entry, LayerInfo, clean_path, file_entry, write_layer_file

if TYPE_CHECKING:
    from nomad.images._build import BuildInputs
    from nomad.images._oci import Descriptor, OciLayout

SITE = "/opt/nomad/custom_nodes/site-packages"
LOCK = "/opt/nomad/custom_nodes/custom_nodes.lock"
_DROP = {"direct_url.json", "INSTALLER", "REQUESTED"}


@dataclass(frozen=True)
class CustomNode:
    """One ``URL@REV`` entry; ``name`` is the folder under ``custom_nodes/``."""

    url: str
    rev: str

    @property
    def name(self) -> str:
        stem = self.url.rstrip("/").rsplit("/", 1)[-1]
        return re.sub(r"\.git$", "", stem) or "custom_node"


def parse(spec: str) -> CustomNode:
    """``URL@REV`` → CustomNode; a missing ``@REV`` is an error (builds must be pinned)."""
    url, sep, rev = spec.rpartition("@")
    if not sep or not url or not re.match(r"^[\w.-]+$", rev):
        raise BuildError(
            f"custom node {spec!r} is not pinned",
            hint="write it as GIT_URL@COMMIT (a commit sha, or a tag)",
        )
    return CustomNode(url, rev)


@dataclass
class CustomNodesLayer:
    """The written layer (a temp file to adopt by digest) and its lock."""

    info: LayerInfo
    path: Path
    lock: dict[str, object]


def build_layer(
    specs: list[str],
    work: Path,
    *,
    comfy_root: str = "/opt/ComfyUI",
    constraints: list[str] | None = None,
    pip_args: list[str] | None = None,
) -> CustomNodesLayer:
    """Fetch, install and pack every custom node into one layer written under ``work``."""
    nodes = [parse(s) for s in specs]
    if work.exists():
        shutil.rmtree(work)
    src, site = work / "src", work / "site"
    src.mkdir(parents=True)
    entries: list[Entry] = []
    commits: dict[str, str] = {}
    requirements: list[Path] = []
    for node in nodes:
        checkout = src / node.name
        commits[node.name] = _checkout(node, checkout)
        for rel, mode in _tracked(checkout):
            dest = clean_path(f"{comfy_root}/custom_nodes/{node.name}/{rel}")
            entries.append(file_entry(dest, checkout / rel, mode=mode))
        if (checkout / "requirements.txt").is_file():
            requirements.append(checkout / "requirements.txt")
    frozen = _pip_install(requirements, site, work, constraints or [], pip_args or [])
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        rel = path.relative_to(site).as_posix()
        if path.name in _DROP and ".dist-info/" in rel:
            continue  # installer bookkeeping, some of it naming this machine's paths
        if rel.startswith("bin/"):
            continue  # console scripts: their shebang is this machine's python; ComfyUI imports
        if "/__pycache__/" in f"/{rel}":
            continue
        entries.append(file_entry(f"{SITE}/{rel}", path, mode=_mode(path)))
    lock: dict[str, object] = {
        "custom_nodes": {
            n.name: {"url": n.url, "rev": n.rev, "commit": commits[n.name]} for n in nodes
        },
        "pip": frozen,
        "constraints": sorted(constraints or []),
    }
    lock_file = work / "custom_nodes.lock"
    lock_file.write_text(_lock_text(lock), encoding="utf-8")
    entries.append(file_entry(LOCK, lock_file))
    info, tmp = write_layer_file(entries, work, parents=False)
    return CustomNodesLayer(info, tmp, lock)


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    except FileNotFoundError as exc:
        raise BuildError("custom nodes need git", hint="apt-get install git") from exc
    except subprocess.CalledProcessError as exc:
        line = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["failed"]
        raise BuildError(f"git {args[0]} failed: {line[0]}") from exc
    return out.stdout


def _checkout(node: CustomNode, dest: Path) -> str:
    _git("clone", "--quiet", "--no-checkout", node.url, str(dest))
    try:
        _git("checkout", "--quiet", "--detach", node.rev, cwd=dest)
    except BuildError as exc:
        raise BuildError(f"custom node {node.url}: revision {node.rev!r} not found") from exc
    return _git("rev-parse", "HEAD", cwd=dest).strip()


def _tracked(checkout: Path) -> list[tuple[str, int]]:
    """Tracked files at HEAD with their git modes (no .git, no untracked files, no symlinks)."""
    out = []
    for line in _git("ls-tree", "-r", "-z", "HEAD", cwd=checkout).split("\0"):
        if not line:
            continue
        meta, _, rel = line.partition("\t")
        mode = meta.split()[0]
        if mode in ("100644", "100755"):
            out.append((rel, 0o755 if mode == "100755" else 0o644))
    return sorted(out)


def _pip_install(
    requirements: list[Path], site: Path, work: Path, constraints: list[str], extra: list[str]
) -> list[str]:
    """Install every requirements file into ``site``; return the frozen ``name==version`` list."""
    site.mkdir(parents=True, exist_ok=True)
    if not requirements:
        return []
    cons = work / "constraints.txt"
    cons.write_text("".join(f"{c}\n" for c in constraints), encoding="utf-8")
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
            "--disable-pip-version-check", "--target", str(site), "-c", str(cons), *extra]  # fmt: skip
    for req in requirements:
        argv += ["-r", str(req)]
    env = {**os.environ, "PIP_NO_INPUT": "1", "SOURCE_DATE_EPOCH": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
        raise BuildError(f"pip could not install the custom nodes' requirements: {tail[0]}")
    frozen = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        fields = dict(
            line.split(": ", 1) for line in meta.read_text("utf-8").splitlines() if ": " in line
        )
        frozen.append(f"{fields.get('Name', meta.parent.name)}=={fields.get('Version', '?')}")
    return frozen


def _mode(p: Path) -> int:
    return 0o755 if os.access(p, os.X_OK) else 0o644


def _lock_text(lock: dict[str, object]) -> str:
    import json

    return json.dumps(lock, indent=2, sort_keys=True) + "\n"


def add_layer(inputs: BuildInputs, layout: OciLayout, work: Path) -> tuple[Descriptor, str]:
    """The build hook: write the layer, adopt it into the layout, put PYTHONPATH in the env."""
    from nomad.images._oci import OCI_LAYER, Descriptor

    built = build_layer(inputs.custom_nodes, work, constraints=inputs.pip_constraints)
    layout.adopt(built.path, built.info.digest)
    inputs.env.setdefault("PYTHONPATH", SITE)
    nodes = built.lock["custom_nodes"]
    names = ", ".join(sorted(nodes)) if isinstance(nodes, dict) else ""
    return Descriptor(
        OCI_LAYER, built.info.digest, built.info.size
    ), f"nomad: custom nodes ({names})"
