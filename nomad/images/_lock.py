"""``nomad.lock``: the image's weight layers in a fixed, append-only order.

Docker-style pulls identify a layer by its *chain id* (its diff_id hashed
with every layer below it), so inserting a layer in the middle makes every
layer above it "new" and a node downloads those weights again. Sorting
layers by path did exactly that: a new ``loras/…`` file landed between
``diffusion_models/`` and ``text_encoders/``. The lock file, next to
nomad.yaml and meant to be committed, records the order the weights were
first built in; a new weight is appended, so every existing layer keeps its
chain id. A weight whose bytes change is removed from its place and appended
(the layers above it keep their chain ids). A weight that disappeared from
nomad.yaml is an error until the removal is explicit (``nomad build --drop
DEST`` or ``--relock``), because removing a layer re-keys everything above it.
The same nomad.yaml + nomad.lock give the same manifest on any machine.

It also lists the repositories the image was pushed to, so a push from a
fresh machine can mount blobs from them instead of uploading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from nomad.errors import BuildError, ConfigError

LOCK_NAME = "nomad.lock"
VERSION = 1


@dataclass
class LockedLayer:
    """One weight layer: where it lands, the weight's sha256 and the layer's digest/size."""

    dest: str
    sha256: str
    digest: str = ""
    size: int = 0


@dataclass
class Lock:
    """The parsed lock file (empty when there is none yet)."""

    path: Path
    layers: list[LockedLayer] = field(default_factory=list)
    repos: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Lock:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})", hint="fix it or delete it and "
                              "run `nomad build --relock`") from None  # fmt: skip
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ConfigError(f"{path}: unknown lock format", hint=f"expected version {VERSION}")
        layers = [
            LockedLayer(str(x["dest"]), str(x["sha256"]), str(x.get("digest", "")),
                        int(x.get("size", 0)))
            for x in doc.get("layers", [])
        ]  # fmt: skip
        return cls(path, layers, [str(r) for r in doc.get("repos", [])])

    def save(self) -> None:
        doc: dict[str, Any] = {
            "version": VERSION,
            "note": "written by `nomad build`; commit it. Layer order is append-only.",
            "layers": [
                {"dest": x.dest, "sha256": x.sha256, "digest": x.digest, "size": x.size}
                for x in self.layers
            ],
            "repos": self.repos,
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.path)

    def add_repo(self, repo: str) -> bool:
        """Remember a ``registry/repository`` the image was pushed to (True when new)."""
        if repo in self.repos:
            return False
        self.repos.append(repo)
        return True


def lock_path(config_dir: Path) -> Path:
    return Path(config_dir) / LOCK_NAME


class _Weight(Protocol):
    @property
    def dest(self) -> str: ...
    @property
    def sha256(self) -> str: ...


W = TypeVar("W", bound=_Weight)


def order_models(
    models: Sequence[W],
    lock: Lock,
    *,
    drop: Sequence[str] = (),
    relock: bool = False,
) -> list[W]:
    """The weights in layer order: locked ones in lock order, then new/changed ones (by path).

    Takes fetched weights (their sha256 is known only after fetching).
    """
    by_dest = {m.dest: m for m in models}
    unknown = [d for d in drop if d not in {x.dest for x in lock.layers}]
    if unknown:
        raise BuildError(f"--drop {unknown[0]}: not in {lock.path}")
    if relock:
        return [by_dest[d] for d in sorted(by_dest)]
    gone = [x.dest for x in lock.layers if x.dest not in by_dest and x.dest not in drop]
    if gone:
        raise BuildError(
            f"model {gone[0]} is in {lock.path} but no longer in nomad.yaml"
            + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""),
            hint=f"removing a weight re-keys every layer after it (nodes re-download them): "
            f"confirm with `nomad build --drop {gone[0]}`, or `--relock` to start a new order",
        )
    kept = [
        by_dest[x.dest]
        for x in lock.layers
        if x.dest in by_dest and x.dest not in drop and by_dest[x.dest].sha256 == x.sha256
    ]
    seen = {m.dest for m in kept}
    return kept + [by_dest[d] for d in sorted(by_dest) if d not in seen]
