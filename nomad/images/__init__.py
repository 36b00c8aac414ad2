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

from pathlib import Path

from nomad.images._base import busybox_base, load_base, write_base_layout
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
from nomad.registry._oci import BaseImage
from nomad.registry._state import LAST_PUSH, last_pushed, record_push

__all__ = [
    "LAST_PUSH",
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


def default_layout(data_dir: Path, project: str) -> Path:
    """Where `nomad build` writes and `nomad push` reads, unless told otherwise."""
    return Path(data_dir) / "images" / project
