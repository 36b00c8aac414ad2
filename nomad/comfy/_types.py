"""Plain data the ComfyUI client hands back: health, events, outputs, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OutputKind = Literal["image", "video", "audio", "other"]

_VIDEO_EXT = {"mp4", "webm", "mov", "mkv", "gif", "avi"}
_IMAGE_EXT = {"png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"}
_AUDIO_EXT = {"flac", "mp3", "wav", "ogg", "opus", "m4a"}
_MEDIA_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "ogg": "audio/ogg",
    "opus": "audio/opus",
    "m4a": "audio/mp4",
}


@dataclass(frozen=True)
class SystemStats:
    """What ``/system_stats`` says about the first device: the health check and bench metadata.

    On a CPU-only server ComfyUI reports a device named ``cpu`` whose
    "VRAM" is system RAM; that becomes ``gpu_name="CPU"`` and 0 GB of VRAM,
    so nothing downstream mistakes RAM for a GPU.
    """

    gpu_name: str
    vram_total_gb: float
    vram_free_gb: float
    device_type: str
    comfyui_version: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def is_cpu(self) -> bool:
        """True when ComfyUI runs on the CPU (no GPU at all)."""
        return self.device_type == "cpu"


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
    """One result file a prompt produced (``type: output`` in the history), from ``/view``.

    ``media_type`` is the MIME type: the ``format`` a node reported (e.g.
    VideoHelperSuite's ``video/h264-mp4`` becomes ``video/mp4``), else the
    file extension's.
    """

    node: str
    filename: str
    subfolder: str
    type: str
    kind: OutputKind
    data: bytes = field(repr=False)
    media_type: str = "application/octet-stream"

    @property
    def extension(self) -> str:
        return self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""


@dataclass(frozen=True)
class Preview:
    """A ``type: temp`` item (PreviewImage & co.): shown live, never a result, not downloaded."""

    node: str
    filename: str
    subfolder: str
    type: str


def output_kind(filename: str, animated: bool = False, fmt: str | None = None) -> OutputKind:
    """Classify an output; ComfyUI marks videos saved as images (webp, png) with ``animated``.

    ``fmt`` is a MIME-ish ``format`` some nodes report (VHS_VideoCombine:
    ``video/h264-mp4``, ``image/gif``); a gif is animation, so a video.
    """
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    major = (fmt or "").split("/", 1)[0].lower()
    if major in ("video", "audio"):
        return "video" if major == "video" else "audio"
    if ext in _VIDEO_EXT or (animated and ext in _IMAGE_EXT):
        return "video"
    if ext in _IMAGE_EXT:
        return "image"
    if ext in _AUDIO_EXT:
        return "audio"
    return "other"


def media_type(filename: str, fmt: str | None = None) -> str:
    """The MIME type of an output: from the node's ``format`` when it names one, else the extension."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    by_ext = _MEDIA_TYPES.get(ext, "application/octet-stream")
    if fmt and "/" in fmt:
        major, minor = fmt.lower().split("/", 1)
        if major in ("image", "video", "audio"):
            if by_ext.startswith(major + "/"):
                return by_ext  # "video/h264-mp4" on a .mp4: the container's type
            return f"{major}/{minor.rsplit('-', 1)[-1]}"
    return by_ext


@dataclass(frozen=True)
class RunResult:
    """A finished prompt: its id, downloaded outputs and per-phase seconds.

    ``timings`` keys: ``upload``, ``queue_wait``, ``execution`` (=
    ``model_load`` + ``inference``, measured from per-node events: loader
    nodes and the samplers' first-step load), ``download`` and ``total``.
    ``cold`` is True when a loader node ran (the model cache was cold).
    ``history`` is ComfyUI's own record, the source of truth.
    ``outputs`` are the results (``type: output``); ``previews`` lists the
    ``type: temp`` items (PreviewImage) that were shown but are not results.
    """

    prompt_id: str
    outputs: list[Output]
    timings: dict[str, float]
    history: dict[str, Any] = field(default_factory=dict, repr=False)
    cached_nodes: list[str] = field(default_factory=list)
    previews: list[Preview] = field(default_factory=list)
    cold: bool = False
