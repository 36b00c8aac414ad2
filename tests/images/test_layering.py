"""The dependency between nomad.images and nomad.registry goes one way (images -> registry)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nomad.registry

REGISTRY = Path(nomad.registry.__file__).parent


def test_registry_never_imports_images() -> None:
    """No module under nomad/registry imports nomad.images (not even lazily inside a function)."""
    offenders = []
    for path in sorted(REGISTRY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.startswith("nomad.images")]
    assert offenders == []


def test_registry_imports_alone() -> None:
    """A fresh interpreter imports nomad.registry without loading nomad.images."""
    code = "import sys, nomad.registry; print('nomad.images' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
