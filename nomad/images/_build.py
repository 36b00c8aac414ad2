"""``nomad build``: base layers untouched + one layer per model file + one small files layer.

Everything here is a pure function of the inputs: the same base, weights,
workflows and config give the same manifest digest on any machine. Weight
layers are remembered by (destination, sha256) so a rebuild after a workflow
edit rewrites only the small layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.config.schema import NomadConfig
from nomad.errors import BuildError, ConfigError
from nomad.images._base import EPOCH, load_base
from nomad.images._fetch import FetchedModel, ModelCache, ModelSpec, fetch_models, public_source
from nomad.images._lock import Lock, LockedLayer, order_models
from nomad.images._oci import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Descriptor,
    OciLayout,
    canonical_json,
)
from nomad.images._profiles import check_runtime_base
from nomad.images._tar import Entry, clean_path, file_entry, write_layer_file
from nomad.registry._oci import BaseImage

LABEL_PREFIX = "io.nomad"
SKIP_NAMES = ("__pycache__", ".git", ".DS_Store")


@dataclass
class BuildInputs:
    """Everything a build depends on, resolved from nomad.yaml."""

    base: str
    tag: str
    models: list[ModelSpec]
    files: dict[str, Path]  # image path -> local file
    env: dict[str, str]
    labels: dict[str, str]
    models_root: str
    port: int
    config_dir: Path
    custom_nodes: list[str] = field(default_factory=list)  # GIT_URL@REV (image.comfyui.custom_nodes)
    pip_constraints: list[str] = field(default_factory=list)  # for the custom nodes' requirements


@dataclass
class BuildResult:
    """What was built and where."""

    layout: Path
    tag: str
    manifest_digest: str
    config_digest: str
    size_bytes: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    base_digest: str = ""  # the base image's manifest digest ("" for the busybox base)

    def to_json(self) -> dict[str, Any]:
        return {
            "layout": str(self.layout),
            "tag": self.tag,
            "digest": self.manifest_digest,
            "config_digest": self.config_digest,
            "size_bytes": self.size_bytes,
            "layers": self.layers,
        }


def models_for(cfg: NomadConfig, config_dir: Path | None = None) -> list[ModelSpec]:
    """The model files the image carries: the chosen model sets (+ workflow needs, see below)."""
    names = cfg.image.model_sets or sorted(cfg.models)
    specs: dict[str, ModelSpec] = {}
    for name in names:
        for m in cfg.models[name]:
            spec = ModelSpec(m.dest, m.source, m.sha256, m.size)
            old = specs.get(m.dest)
            if old and (old.source, old.sha256) != (spec.source, spec.sha256):
                raise BuildError(
                    f"model {m.dest} is listed twice with different sources/sha256 (set {name})"
                )
            specs[m.dest] = spec
    for spec in models_from_workflows(cfg, config_dir):
        specs.setdefault(spec.dest, spec)
    return [specs[k] for k in sorted(specs)]


def models_from_workflows(cfg: NomadConfig, config_dir: Path | None = None) -> list[ModelSpec]:
    """Models the enabled workflows need (when ``image.models_from_workflows`` is on).

    Each requirement must carry a download URL in its binding file; one that
    does not is an error naming it (list that file under ``models:`` instead).
    """
    if not cfg.image.models_from_workflows:
        return []
    from nomad.workflows import list_workflows, load_workflow, required_models

    dirs = [_abs(d, config_dir or Path.cwd()) for d in cfg.workflows.dirs]
    names = cfg.workflows.enabled or [w.name for w in list_workflows(dirs) if w.error is None]
    specs = []
    for req in required_models([load_workflow(n, dirs) for n in names]):
        dest = f"{req.folder}/{req.file}"
        if not req.url:
            raise BuildError(
                f"workflow model {dest} has no url in its binding file",
                hint="list it under `models:` in nomad.yaml with a source",
            )
        specs.append(ModelSpec(dest, req.url, req.sha256, req.size))
    return specs


def files_for(cfg: NomadConfig, config_dir: Path, workflows_dir: Path | None) -> dict[str, Path]:
    """The small layer: the workflows folder(s) under workflows_root + image.extra_files."""
    files: dict[str, Path] = {}
    dirs = [workflows_dir] if workflows_dir else []
    dirs += [_abs(d, config_dir) for d in cfg.workflows.dirs]
    for d in dirs:
        if d is None or not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            rel = p.relative_to(d)
            if p.is_file() and not any(
                part in SKIP_NAMES or part.startswith(".") for part in rel.parts
            ):
                files[clean_path(f"{cfg.image.workflows_root}/{rel.as_posix()}")] = p
    for dest, src in sorted(cfg.image.extra_files.items()):
        p = _abs(src, config_dir)
        if not p.is_file():
            raise BuildError(f"image.extra_files[{dest!r}]: {p} is not a file")
        files[clean_path(dest)] = p
    return files


def _abs(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def inputs_from_config(
    cfg: NomadConfig, config_dir: Path, workflows_dir: Path | None
) -> BuildInputs:
    """Resolve nomad.yaml into build inputs (paths relative to the config's folder)."""
    return BuildInputs(
        base=cfg.image.base,
        tag=cfg.image.tag,
        models=models_for(cfg, config_dir),
        files=files_for(cfg, config_dir, workflows_dir),
        env=dict(cfg.image.env),
        labels=dict(cfg.image.labels),
        models_root=cfg.image.models_root,
        port=cfg.image.comfyui.port,
        config_dir=config_dir,
        custom_nodes=list(cfg.image.comfyui.custom_nodes),
        pip_constraints=list(cfg.image.comfyui.pip_constraints),
    )


OnBytes = Callable[[str, int, int | None], None]


def build_image(
    inputs: BuildInputs,
    out: Path,
    cache: ModelCache,
    *,
    parallel: int = 4,
    progress: OnBytes | None = None,
    s3_settings: Any = None,
    lock: Lock | None = None,
    drop: Sequence[str] = (),
    relock: bool = False,
    registry_proxy: str | None = None,
    download_proxy: str | None = None,
) -> BuildResult:
    """Assemble the image into the OCI layout ``out`` and tag it ``inputs.tag``.

    ``registry_proxy``/``download_proxy``: the SOCKS5h proxy of the registry leg (the base
    pull) and the downloads leg (models by URL), from ``privacy.proxy_for``; None is direct.

    With ``lock`` the weight layers follow its append-only order (see ``_lock``) and
    ``lock.layers`` is updated to what was built (the caller saves it).
    """
    fresh = not out.exists()
    layout = OciLayout(out).init()
    base = load_base(inputs.base, layout, config_dir=inputs.config_dir, proxy=registry_proxy)
    try:  # before any weight is fetched: real weights need a base with ComfyUI (_profiles)
        check_runtime_base(
            inputs.base, base, layout, inputs.models, inputs.config_dir, inputs.models_root
        )
    except ConfigError:  # refused: leave nothing behind
        if fresh:
            shutil.rmtree(out)
        else:
            layout.gc()
        raise
    fetched = fetch_models(
        inputs.models,
        cache,
        base_dir=inputs.config_dir,
        parallel=parallel,
        progress=progress,
        s3_settings=s3_settings,
        proxy=download_proxy,
    )
    if lock is not None:
        fetched = order_models(fetched, lock, drop=drop, relock=relock)
    added: list[tuple[Descriptor, str]] = []
    for fm in fetched:
        added.append(
            (
                _model_layer(fm, inputs.models_root, layout, cache, progress),
                f"nomad: model {fm.dest}",
            )
        )
    if lock is not None:
        lock.layers = [
            LockedLayer(fm.dest, fm.sha256, d.digest, d.size)
            for fm, (d, _) in zip(fetched, added, strict=False)
        ]
    if inputs.custom_nodes:  # one deterministic layer: sources at their commits + pip deps
        from nomad.images._custom_nodes import add_layer

        added.append(add_layer(inputs, layout, cache.root.parent / "custom_nodes"))
    if inputs.files:
        entries = [file_entry(dest, src, mode=_mode(src)) for dest, src in inputs.files.items()]
        added.append((_write(entries, layout, None), f"nomad: files ({len(entries)})"))
    config = _config(base, inputs, fetched, added)
    cfg_desc = layout.put_bytes(canonical_json(config), OCI_CONFIG)
    layers = [*base.layers, *(d for d, _ in added)]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": cfg_desc.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    man_desc = layout.put_bytes(canonical_json(manifest), OCI_MANIFEST)
    layout.tag(man_desc, inputs.tag)
    layout.gc()  # superseded layers of earlier builds (the same tag) go
    notes = ["base"] * len(base.layers) + [why for _, why in added]
    return BuildResult(
        layout=out,
        tag=inputs.tag,
        manifest_digest=man_desc.digest,
        config_digest=cfg_desc.digest,
        size_bytes=sum(d.size for d in layers) + cfg_desc.size + man_desc.size,
        layers=[
            {"digest": d.digest, "size": d.size, "what": n}
            for d, n in zip(layers, notes, strict=True)
        ],
        base_digest=base.digest,
    )


def _mode(p: Path) -> int:
    return 0o755 if os.access(p, os.X_OK) else 0o644


def _write(
    entries: Sequence[Entry], layout: OciLayout, tick: Callable[[int], None] | None
) -> Descriptor:
    # no parent directory entries: the base's folders keep their owner and mode
    info, tmp = write_layer_file(entries, layout.blobs, on_bytes=tick, parents=False)
    layout.adopt(tmp, info.digest)
    return Descriptor(OCI_LAYER, info.digest, info.size)


def _model_layer(
    fm: FetchedModel, root: str, layout: OciLayout, cache: ModelCache, progress: OnBytes | None
) -> Descriptor:
    """One layer per weight, reused when the same file already sits at the same path."""
    dest = clean_path(f"{root}/{fm.dest}")
    # v2: layers without parent directory entries (v1 layers carried root-owned parents)
    key = "layer:" + hashlib.sha256(f"v2\0{dest}\0{fm.sha256}\0{fm.size}".encode()).hexdigest()
    known = cache.lookup(key)
    if known:
        digest, size = json.loads(known)
        if layout.has(digest, size):
            return Descriptor(OCI_LAYER, digest, size)
    tick = (lambda n: progress(f"layer {fm.dest}", n, fm.size)) if progress else None
    desc = _write([file_entry(dest, fm.path)], layout, tick)
    cache.remember(key, json.dumps([desc.digest, desc.size]))
    return desc


def _config(
    base: BaseImage,
    inputs: BuildInputs,
    fetched: list[FetchedModel],
    added: list[tuple[Descriptor, str]],
) -> dict[str, Any]:
    """The image config: base + env, labels, port; diff_ids == layer digests."""
    cfg = json.loads(json.dumps(base.config))  # deep copy
    inner = cfg.setdefault("config", {}) or {}
    cfg["config"] = inner
    env = dict(e.split("=", 1) for e in inner.get("Env") or [] if "=" in e)
    env.update({"NOMAD_MODELS_ROOT": inputs.models_root, **inputs.env})
    inner["Env"] = [f"{k}={v}" for k, v in sorted(env.items())]
    ports = dict(inner.get("ExposedPorts") or {})
    ports[f"{inputs.port}/tcp"] = {}
    inner["ExposedPorts"] = ports
    labels = dict(inner.get("Labels") or {})
    labels.update(model_labels(fetched))
    labels.update(inputs.labels)
    inner["Labels"] = labels
    rootfs = cfg.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(d.digest for d, _ in added)]
    history = list(cfg.get("history") or [])
    history += [{"created": EPOCH, "created_by": why} for _, why in added]
    cfg["history"] = history
    cfg["created"] = EPOCH
    cfg.setdefault("architecture", "amd64")
    cfg.setdefault("os", "linux")
    return dict(cfg)


def model_labels(fetched: list[FetchedModel]) -> dict[str, str]:
    """One label per model (``io.nomad.model.<dest>`` = ``sha256:<hex> <source>``) + a summary."""
    labels = {
        f"{LABEL_PREFIX}.model.{fm.dest}": f"sha256:{fm.sha256} {public_source(fm.source)}"
        for fm in fetched
    }
    summary = [
        {
            "name": Path(fm.dest).name,
            "dest": fm.dest,
            "sha256": fm.sha256,
            "size": fm.size,
            "source": public_source(fm.source),
        }
        for fm in fetched
    ]
    labels[f"{LABEL_PREFIX}.models"] = json.dumps(summary, sort_keys=True, separators=(",", ":"))
    return labels
