"""The workflow library: API-format ComfyUI graphs + binding files.

A workflow is ``NAME.json`` (API format, what ``/prompt`` takes) plus
``NAME.yaml`` (named parameters → node inputs, defaults, bounds, and the model
files it needs). Built-ins live in the repository's ``workflows/``; users add
folders through ``workflows.dirs`` in nomad.yaml. See docs/workflows.md.
"""

from nomad.workflows._library import (
    LOADERS,
    BoundWorkflow,
    Workflow,
    WorkflowInfo,
    builtin_dir,
    graph_models,
    list_workflows,
    load_workflow,
    load_workflow_file,
    read_graph,
    required_models,
)
from nomad.workflows._spec import BindingFile, ModelReq, ParamSpec

__all__ = [
    "LOADERS",
    "BindingFile",
    "BoundWorkflow",
    "ModelReq",
    "ParamSpec",
    "Workflow",
    "WorkflowInfo",
    "builtin_dir",
    "graph_models",
    "list_workflows",
    "load_workflow",
    "load_workflow_file",
    "read_graph",
    "required_models",
]
