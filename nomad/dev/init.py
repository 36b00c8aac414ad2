"""The example ``nomad.yaml`` that ``nomad init`` writes, validated before it lands."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nomad.errors import UsageError

EXAMPLE = "nomad.example.yaml"
# a public ComfyUI CUDA image with a known layout (nomad.images._profiles); no build needed
DEFAULT_BASE = "docker.io/runpod/worker-comfyui:5.5.1-base"


def example_text() -> str:
    """The commented example config shipped as package data."""
    return resources.files("nomad.data").joinpath(EXAMPLE).read_text(encoding="utf-8")


@dataclass(frozen=True)
class BaseChoice:
    """The runtime base ``nomad init`` wrote, and what it knows about it."""

    image: str
    models_root: str
    profile: str | None  # None: no known profile, ComfyUI assumed in the folder above models_root


def choose_base(base: str | None) -> BaseChoice:
    """The base to write: ``base`` (with its profile's models_root when known) or the default."""
    from nomad.images._profiles import profile_for

    image = base or DEFAULT_BASE
    profile = profile_for(image)
    if profile is not None:
        return BaseChoice(image, profile.models_root, profile.name)
    return BaseChoice(image, "/opt/ComfyUI/models", None)


def with_base(text: str, choice: BaseChoice) -> str:
    """The example text with ``image.base`` and ``image.models_root`` set to ``choice``."""
    lines = []
    for line in text.splitlines(keepends=True):
        if line.startswith("  base: "):
            line = f"  base: {choice.image}\n"
        elif line.startswith("  models_root: "):
            line = f"  models_root: {choice.models_root}\n"
        lines.append(line)
    return "".join(lines)


def write_example(
    directory: str | os.PathLike[str], *, force: bool = False, base: str | None = None
) -> tuple[Path, BaseChoice]:
    """Write ``DIR/nomad.yaml``; refuse to replace an existing file unless ``force``."""
    from nomad.config import load_text

    dest = Path(directory) / "nomad.yaml"
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists", hint="pass --force to overwrite it")
    choice = choose_base(base)
    text = with_base(example_text(), choice)
    load_text(text, name=EXAMPLE)  # never write a file nomad itself would reject
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(".nomad.yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(dest)
    return dest, choice
