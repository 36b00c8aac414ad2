"""The example ``nomad.yaml`` that ``nomad init`` writes, validated before it lands."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from nomad.errors import UsageError

EXAMPLE = "nomad.example.yaml"


def example_text() -> str:
    """The commented example config shipped as package data."""
    return resources.files("nomad.data").joinpath(EXAMPLE).read_text(encoding="utf-8")


def write_example(directory: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write ``DIR/nomad.yaml``; refuse to replace an existing file unless ``force``."""
    from nomad.config import load_text

    dest = Path(directory) / "nomad.yaml"
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists", hint="pass --force to overwrite it")
    text = example_text()
    load_text(text, name=EXAMPLE)  # never write a file nomad itself would reject
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(".nomad.yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(dest)
    return dest
