"""Package layout that pyproject.toml cannot express: the ``bot/`` folder ships as ``nomad_bot``.

The repository keeps the Telegram front door in a top-level ``bot/`` folder
(fixed layout), but a top-level import package called ``bot`` would collide
with anything else of that name on a user's machine, so it installs under a
nomad-owned name. Everything else lives in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["nomad", "nomad.*"]), "nomad_bot"],
    package_dir={"nomad_bot": "bot"},
)
