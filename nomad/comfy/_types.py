"""Plain data the ComfyUI client hands back: health, events, outputs, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OutputKind = Literal["image", "video", "other"]

_VIDEO_EXT = {"mp4", "webm", "mov", "mkv", "gif", "avi"}
_IMAGE_EXT = {"png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"}


@dataclass(frozen=True)
class SystemStats:
    """What ``/system_stats`` says about the first device: the health check and bench metadata."""

    gpu_name: str
    vram_total_gb: float
    vram_free_gb: float
    device_type: str
    comfyui_version: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class ComfyEvent:
    """One progress event from ``/ws`` (or synthesised from ``/history`` after a socket drop).

    ``type`` is ComfyUI's message type (``executing``, ``progress``, ``executed``,
    ``execution_cached``, …) or ``preview`` for a binary preview frame
    (``image`` holds its bytes). ``fraction`` is value/max for ``progress``.
    """

    type: str
    prompt_id: str | None = None
    node: str | None = None
    class_type: str | None = None
    value: int | None = None
    max: int | None = None
    image: bytes | None = field(default=None, repr=False)
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def fraction(self) -> float | None:
        if self.value is None or not self.max:
            return None
        return self.value / self.max


@dataclass(frozen=True)
class Output:
    """One file a prompt produced, downloaded from ``/view``."""

    node: str
    filename: str
    subfolder: str
    type: str
    kind: OutputKind
    data: bytes = field(repr=False)

    @property
    def extension(self) -> str:
        return self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""


def output_kind(filename: str, animated: bool = False) -> OutputKind:
    """Classify an output by extension; ComfyUI marks videos saved as images with ``animated``."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext in _VIDEO_EXT or (animated and ext in _IMAGE_EXT):
        return "video"
    if ext in _IMAGE_EXT:
        return "image"
    return "other"


@dataclass(frozen=True)
class RunResult:
    """A finished prompt: its id, downloaded outputs and per-phase seconds.

    ``timings`` keys: ``upload``, ``queue_wait``, ``execution``, ``download``
    (and ``total``). ``history`` is ComfyUI's own record, the source of truth.
    """

    prompt_id: str
    outputs: list[Output]
    timings: dict[str, float]
    history: dict[str, Any] = field(default_factory=dict, repr=False)
    cached_nodes: list[str] = field(default_factory=list)
