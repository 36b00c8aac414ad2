"""Package layout that pyproject.toml cannot express.

* The ``bot/`` folder ships as ``nomad_bot``: a top-level import package
  called ``bot`` would collide with anything else of that name.
* Run-time data ships inside the ``nomad`` package and is found through
  :mod:`importlib.resources` (see ``nomad/resources.py``), never through a
  source tree. The repository keeps its fixed top-level folders
  (``workflows/``, ``sky/``, ``images/``, ``examples/``); ``nomad/data/``
  holds a relative symlink to each, so a checkout (``pip install -e .``) and
  a wheel (where setuptools copies the files behind the links) resolve the
  same ``nomad/data/<folder>`` paths.

Everything else lives in pyproject.toml.
"""

import warnings

from setuptools import find_namespace_packages, setup

# nomad/data's folders are importable as namespace packages but are data on
# purpose (shipped through package_data below); setuptools warns about each.
warnings.filterwarnings("ignore", message=r"Package 'nomad\.data\..*' is absent from the `packages`")

DATA = [
    "*.yaml",
    "catalog/**/*",
    "workflows/*.json",
    "workflows/*.yaml",
    "workflows/*.md",
    "sky/*.yaml",
    "images/**/*",
    "examples/**/*",
]

setup(
    packages=[
        # nomad.data's folders are data, not packages (some are links to the repo's folders)
        *find_namespace_packages(include=["nomad", "nomad.*"], exclude=["nomad.data.*"]),
        "nomad_bot",
    ],
    package_dir={"nomad_bot": "bot"},
    package_data={
        "nomad": ["py.typed"],
        "nomad.data": DATA,
        "nomad.web": ["static/*"],
        "nomad.queue.migrations": ["*/*.sql"],
    },
    exclude_package_data={
        # generated locally (stand-in weights, bytecode): never shipped
        "nomad.data": ["examples/*/weights/*", "**/__pycache__/*", "**/*.pyc"],
    },
)
