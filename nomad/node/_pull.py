"""``nomad node pull``: the image's weight layers into the node cache, and how to mount them.

The container engine still pulls the small part of the image (runtime base,
workflows); nomad moves the weights: several blobs at once, several ranges
per blob, straight into their final files, verified, kept by digest. A
weight already in the cache costs nothing — no request, no read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nomad.errors import ModelFetchError
from nomad.node._cache import CacheEntry, NodeCache
from nomad.node._fetch import BlobFetch
from nomad.node._image import ImagePlan, WeightLayer, resolve
from nomad.node._source import BlobSource, RegistrySource
from nomad.registry import Reference, RegistryClient

Emit = Callable[[dict[str, Any]], None]
Tick = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Mount:
    """Bind ``source`` (a cached weight file) read-only at ``target`` inside the container."""

    source: Path
    target: str


@dataclass
class MountPlan:
    """Where each weight goes in ComfyUI's models folder."""

    models_root: str
    mounts: list[Mount] = field(default_factory=list)

    def docker_args(self) -> list[str]:
        """``-v SRC:DST:ro`` per weight, for ``docker run``."""
        out: list[str] = []
        for m in self.mounts:
            out += ["-v", f"{m.source}:{m.target}:ro"]
        return out

    def link_tree(self, models_dir: Path) -> list[Path]:
        """Symlink each weight into ``models_dir`` (ComfyUI run as a host process, no container).

        Existing links are replaced; a regular file in the way is an error (never deleted).
        """
        made = []
        for m in self.mounts:
            rel = PurePosixPath(m.target).relative_to(self.models_root)
            link = models_dir / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink():
                link.unlink()
            elif link.exists():
                raise ModelFetchError(
                    f"{link} exists and is not a link nomad made",
                    hint="move it away, or point the models folder elsewhere",
                )
            link.symlink_to(m.source)
            made.append(link)
        return made

    def to_json(self) -> dict[str, Any]:
        return {
            "models_root": self.models_root,
            "mounts": [{"source": str(m.source), "target": m.target} for m in self.mounts],
        }


@dataclass(frozen=True)
class LayerResult:
    """One weight layer of the pull."""

    digest: str
    dest: str
    size: int
    outcome: str  # "cached" | "fetched" | "resumed"
    bytes_moved: int
    seconds: float
    via: str


@dataclass
class PullResult:
    """What ``nomad node pull`` did."""

    ref: str
    manifest_digest: str
    layers: list[LayerResult]
    evicted: list[CacheEntry]
    mounts: MountPlan
    seconds: float
    base_layers: int

    @property
    def bytes_moved(self) -> int:
        return sum(r.bytes_moved for r in self.layers)

    @property
    def weight_bytes(self) -> int:
        return sum(r.size for r in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "manifest_digest": self.manifest_digest,
            "seconds": round(self.seconds, 3),
            "weight_bytes": self.weight_bytes,
            "bytes_moved": self.bytes_moved,
            "base_layers": self.base_layers,
            "layers": [r.__dict__ for r in self.layers],
            "evicted": [e.digest for e in self.evicted],
            "mounts": self.mounts.to_json(),
        }


def pull_weights(
    client: RegistryClient,
    ref: Reference,
    cache: NodeCache,
    *,
    source: BlobSource | None = None,
    parallel: int = 3,
    streams: int = 4,
    chunk: int = 32 * 1024 * 1024,
    tick: Tick | None = None,
    emit: Emit | None = None,
) -> PullResult:
    """Resolve ``ref``, make room, fetch missing weight layers, return the mount plan."""
    t0 = time.monotonic()
    say = emit or (lambda _e: None)
    plan = resolve(client, ref)
    if not plan.weights:
        raise ModelFetchError(
            f"{ref}: the image has no nomad weight layers",
            hint="build it with `nomad build` (models: in nomad.yaml), or use baked mode",
        )
    src = source or RegistrySource(client, ref.repository)
    missing = [w for w in plan.weights if not cache.has(w.layer.digest)]
    evicted = cache.make_room(
        sum(w.layer.size for w in missing), keep=[w.layer.digest for w in plan.weights]
    )
    for e in evicted:
        say({"event": "node.cache.evict", "digest": e.digest, "size": e.size, "path": e.path})

    def one(w: WeightLayer) -> LayerResult:
        return _one(w, plan, cache, src, streams, chunk, tick, say)

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="weights") as pool:
        results = list(pool.map(one, plan.weights))
    cache.touch(w.layer.digest for w in plan.weights)
    mounts = MountPlan(
        plan.models_root,
        [
            Mount(cache.file(w.layer.digest), f"{plan.models_root.rstrip('/')}/{w.dest}")
            for w in plan.weights
        ],
    )
    return PullResult(
        ref=str(ref),
        manifest_digest=plan.manifest_digest,
        layers=results,
        evicted=evicted,
        mounts=mounts,
        seconds=time.monotonic() - t0,
        base_layers=len(plan.other_layers),
    )


def _one(
    w: WeightLayer,
    plan: ImagePlan,
    cache: NodeCache,
    src: BlobSource,
    streams: int,
    chunk: int,
    tick: Tick | None,
    say: Emit,
) -> LayerResult:
    t0 = time.monotonic()
    d = w.layer.digest
    if cache.has(d):
        size = cache.file(d).stat().st_size
        say({"event": "node.weights.layer", "digest": d, "dest": w.dest, "outcome": "cached"})
        return LayerResult(d, w.dest, size, "cached", 0, 0.0, "cache")
    with cache.fetching(d):
        if cache.has(d):  # another process finished it while we waited
            size = cache.file(d).stat().st_size
            return LayerResult(d, w.dest, size, "cached", 0, time.monotonic() - t0, "cache")
        fetch = BlobFetch(
            src,
            d,
            w.layer.size,
            cache.part(d),
            cache.state(d),
            media_type=w.layer.media_type,
            what=f"weight {w.dest} of {plan.ref.repository} (layer {d[:19]}…)",
            streams=streams,
            chunk=chunk,
            on_bytes=(lambda n: tick(w.dest, n, w.layer.size)) if tick else None,
        )
        out = fetch.run()
        expect = f"{plan.models_root.strip('/')}/{w.dest}"
        if out.file_path.strip("/") != expect or (
            w.file_size is not None and out.file_size != w.file_size
        ):
            cache.part(d).unlink(missing_ok=True)
            raise ModelFetchError(
                f"weight layer {d} holds {out.file_path} ({out.file_size} bytes), "
                f"the image config says {expect} ({w.file_size} bytes)",
                hint="the image is inconsistent; rebuild it with `nomad build`",
            )
        os.chmod(out.path, 0o444)
        cache.add(d, out.path, w.dest)
    outcome = "resumed" if out.resumed_bytes else "fetched"
    secs = time.monotonic() - t0
    say(
        {
            "event": "node.weights.layer",
            "digest": d,
            "dest": w.dest,
            "outcome": outcome,
            "bytes_moved": out.bytes_moved,
            "seconds": round(secs, 3),
            "via": out.via,
        }
    )
    return LayerResult(d, w.dest, out.file_size, outcome, out.bytes_moved, secs, out.via)
