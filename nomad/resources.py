"""Files nomad ships and needs at run time, found through :mod:`importlib.resources`.

Everything here is package data of the installed distribution — never a path
into a source checkout — so ``pip install`` (a wheel) and ``pip install -e .``
(a checkout) behave the same. The repository keeps its fixed top-level
folders (``workflows/``, ``sky/``, ``images/``, ``examples/``) and reaches
each as ``nomad/data/<folder>``: a relative symlink in the checkout, copied
files in a wheel (see setup.py). The catalog snapshot and the example config
live in ``nomad/data/`` itself.

Callers get real :class:`~pathlib.Path` objects because the consumers (the
build context for docker buildx, SkyPilot's catalog loader, ``runpy``) need
files on disk; nomad is never installed zipped (setuptools wheels unpack).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nomad.errors import NomadError

__all__ = [
    "DISTRIBUTION",
    "catalog_dir",
    "example_config",
    "examples_dir",
    "images_dir",
    "resource_path",
    "runtime_context_dir",
    "sky_template",
    "workflows_dir",
]


# the name on PyPI (the import package and the command stay `nomad`; PyPI's `nomad` is another project)
DISTRIBUTION = "nomad-comfy"


def resource_path(package: str, *parts: str) -> Path:
    """A file or folder shipped in ``package``, as a path on disk; missing ⇒ NomadError.

    A missing resource means a broken install (a wheel built without its
    package data), not a user mistake, so the hint says how to reinstall.
    """
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        root = None
    target = root.joinpath(*parts) if root is not None and parts else root
    if target is None or not isinstance(target, Path) or not target.exists():
        where = "/".join([package.replace(".", "/"), *parts])
        raise NomadError(
            f"nomad's packaged file {where} is missing from this install",
            hint="reinstall nomad (pip install --force-reinstall); a wheel must ship its data files",
        )
    return target


def workflows_dir() -> Path:
    """The built-in workflow library (the repo's ``workflows/``)."""
    return resource_path("nomad.data", "workflows")


def sky_template(name: str = "comfyui.yaml") -> Path:
    """A SkyPilot task template (the repo's ``sky/``)."""
    return resource_path("nomad.data", "sky", name)


def images_dir() -> Path:
    """The repo's ``images/``: runtime Dockerfile context and model-set manifests."""
    return resource_path("nomad.data", "images")


def runtime_context_dir() -> Path:
    """The ComfyUI runtime image's build context (``images/comfyui``)."""
    return resource_path("nomad.data", "images", "comfyui")


def catalog_dir() -> Path:
    """The pinned SkyPilot catalog snapshot for offline plans (``--catalog``)."""
    return resource_path("nomad.data", "catalog")


def examples_dir() -> Path:
    """The repo's ``examples/`` (the embedded quickstart project)."""
    return resource_path("nomad.data", "examples")


def example_config() -> Path:
    """The commented example ``nomad.yaml`` that ``nomad init`` writes."""
    return resource_path("nomad.data", "nomad.example.yaml")
