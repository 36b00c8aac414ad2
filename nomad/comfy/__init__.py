"""The ComfyUI seam: an async client over httpx + websockets.

Public API: :class:`ComfyClient`, its result types and the extra errors it
raises (all subclasses of :class:`nomad.errors.ComfyError`). The protocol
double for tests is :class:`nomad.testing.comfy.FakeComfy`.
"""

from nomad.comfy._errors import ComfyTimeout, MissingModelError
from nomad.comfy._object_info import GraphProblem, check_graph
from nomad.comfy._types import (
    ComfyEvent,
    Output,
    Preview,
    RunResult,
    SystemStats,
    media_type,
    output_kind,
)
from nomad.comfy.client import ComfyClient

__all__ = [
    "ComfyClient",
    "ComfyEvent",
    "ComfyTimeout",
    "GraphProblem",
    "MissingModelError",
    "Output",
    "Preview",
    "RunResult",
    "SystemStats",
    "check_graph",
    "media_type",
    "output_kind",
]
