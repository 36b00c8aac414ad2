"""Images: deterministic weight layers, OCI layouts, the model cache, Dockerfile export.

Public API::

    build_image(inputs, out, cache)      -> BuildResult   (nomad build)
    inputs_from_config(cfg, dir, wf_dir) -> BuildInputs
    fetch_models(specs, cache)           -> [FetchedModel]
    export_dockerfile(...)               -> DockerfileExport
    write_base_layout(dir)               -> the busybox test base as an OCI layout
    last_pushed(data_dir)                -> {ref, registry, repository, digest, size_bytes} | None
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nomad.images._base import BaseImage, busybox_base, load_base, write_base_layout
from nomad.images._build import (
    BuildInputs,
    BuildResult,
    build_image,
    files_for,
    inputs_from_config,
    model_labels,
    models_for,
    models_from_workflows,
)
from nomad.images._dockerfile import (
    DockerfileExport,
    export_dockerfile,
    require_buildx,
    run_buildx,
)
from nomad.images._fetch import FetchedModel, ModelCache, ModelSpec, fetch_models, public_source
from nomad.images._oci import Descriptor, OciLayout
from nomad.images._tar import Entry, LayerInfo, file_entry, write_layer

__all__ = [
    "BaseImage",
    "BuildInputs",
    "BuildResult",
    "Descriptor",
    "DockerfileExport",
    "Entry",
    "FetchedModel",
    "LayerInfo",
    "ModelCache",
    "ModelSpec",
    "OciLayout",
    "build_image",
    "busybox_base",
    "default_layout",
    "export_dockerfile",
    "fetch_models",
    "file_entry",
    "files_for",
    "inputs_from_config",
    "last_pushed",
    "load_base",
    "model_labels",
    "models_for",
    "models_from_workflows",
    "public_source",
    "record_push",
    "require_buildx",
    "run_buildx",
    "write_base_layout",
    "write_layer",
]

LAST_PUSH = "last_push.json"


def default_layout(data_dir: Path, project: str) -> Path:
    """Where `nomad build` writes and `nomad push` reads, unless told otherwise."""
    return Path(data_dir) / "images" / project


def record_push(data_dir: Path, result: dict[str, Any]) -> Path:
    """Write data_dir/images/last_push.json so `nomad up` knows what to launch."""
    path = Path(data_dir) / "images" / LAST_PUSH
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = {
        k: result[k]
        for k in ("ref", "registry", "repository", "digest", "size_bytes", "tag")
        if k in result
    }
    tmp = path.with_name(f".{LAST_PUSH}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(keep, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def last_pushed(data_dir: Path) -> dict[str, Any] | None:
    """The last successful push from this data dir, or None when nothing was pushed yet."""
    try:
        data = json.loads((Path(data_dir) / "images" / LAST_PUSH).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
