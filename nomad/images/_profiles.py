"""Runtime bases you can trust before paying for a GPU: base profiles and the ComfyUI check.

A *base profile* says, for a well-known public ComfyUI CUDA image, where
ComfyUI lives, which Python runs it, how to start it and where models go, so
a user can go real without building a runtime image. ``images/comfyui``
(built with ``nomad base build``) is the build-your-own path and has a
profile too.

:func:`check_runtime_base` runs inside ``nomad build`` after the base is
loaded and before any weight is fetched: an image that carries real weights
on a base without ``main.py`` where the config says ComfyUI lives (the
parent of ``image.models_root``) is refused with exit 2 — a GPU would start
it and never serve. It reads only the base's layer listings (tar headers of
blobs already in the layout): no daemon, no extraction.
"""

from __future__ import annotations

import ipaddress
import posixpath
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nomad.errors import ConfigError
from nomad.registry._oci import BaseImage, OciLayout

__all__ = [
    "PROFILES",
    "BaseProfile",
    "base_has_file",
    "check_runtime_base",
    "comfyui_dir",
    "profile_for",
    "real_weights",
    "start_env",
]

REAL_WEIGHT_BYTES = 64 * 1024 * 1024  # a local file this big is a real model, not a stand-in


@dataclass(frozen=True)
class BaseProfile:
    """How a ComfyUI runtime image is laid out and started."""

    name: str
    image: str  # a reference to use as image.base
    repositories: tuple[str, ...]  # repository names this profile describes (no tag)
    comfyui_dir: str
    python: str
    models_root: str
    source: str  # where the layout was read from

    def start_command(self, port: int = 8188) -> str:
        """The command that starts one ComfyUI server on ``port``."""
        return f"{self.python} {self.comfyui_dir}/main.py --listen 0.0.0.0 --port {port}"


PROFILES: tuple[BaseProfile, ...] = (
    BaseProfile(
        name="nomad-runtime",
        image="REGISTRY/comfyui-runtime:v0.3.75",
        repositories=("comfyui-runtime", "nomad-comfyui", "nomad/comfyui"),
        comfyui_dir="/opt/ComfyUI",
        python="python3",  # /opt/venv/bin is first on the image's PATH
        models_root="/opt/ComfyUI/models",
        source="images/comfyui/Dockerfile (`nomad base build`)",
    ),
    BaseProfile(
        name="runpod-worker-comfyui",
        image="docker.io/runpod/worker-comfyui:5.5.1-base",
        repositories=("runpod/worker-comfyui", "docker.io/runpod/worker-comfyui"),
        comfyui_dir="/comfyui",
        python="/opt/venv/bin/python",
        models_root="/comfyui/models",
        source="github.com/runpod-workers/worker-comfyui Dockerfile (comfy --workspace /comfyui, uv venv /opt/venv)",
    ),
)


def _repository(ref: str) -> str:
    """``host/repo`` of a reference without its tag or digest."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return name


def profile_for(base: str) -> BaseProfile | None:
    """The profile whose repository ``base`` names (ends with), if any."""
    repo = _repository(base)
    for p in PROFILES:
        if any(repo == r or repo.endswith("/" + r) for r in p.repositories):
            return p
    return None


def start_env(base: str, models_root: str) -> dict[str, str]:
    """``NOMAD_COMFY_CMD`` for the node: the profile's Python and ComfyUI folder (port appended there).

    Without a profile it is the task template's own default when ComfyUI is in
    /opt/ComfyUI, so configs that never heard of profiles launch exactly as before.
    """
    home = comfyui_dir(models_root)
    profile = profile_for(base)
    python = profile.python if profile is not None and profile.comfyui_dir == home else "python3"
    return {"NOMAD_COMFY_CMD": f"{python} {home}/main.py --listen 0.0.0.0 --disable-auto-launch"}


def comfyui_dir(models_root: str) -> str:
    """Where the config says ComfyUI lives: the folder holding ``image.models_root``."""
    return posixpath.dirname(models_root.rstrip("/")) or "/"


def _remote(source: str) -> bool:
    """True for a source fetched from another machine (loopback test servers excepted)."""
    if "://" not in source:
        return False
    parts = urlsplit(source)
    if parts.scheme not in ("http", "https"):
        return True  # s3://, hf://: someone's real bucket or hub
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def real_weights(models: Sequence[object], config_dir: Path) -> list[str]:
    """Destinations of model files that are real weights (remote, or ≥ 64 MiB), not stand-ins."""
    real = []
    for m in models:
        dest, source = str(getattr(m, "dest", "")), str(getattr(m, "source", ""))
        size = getattr(m, "size", None)
        if _remote(source) or (size or 0) >= REAL_WEIGHT_BYTES:
            real.append(dest)
            continue
        local = Path(source).expanduser()
        local = local if local.is_absolute() else config_dir / local
        if local.is_file() and local.stat().st_size >= REAL_WEIGHT_BYTES:
            real.append(dest)
    return real


def base_has_file(layout: OciLayout, base: BaseImage, path: str) -> bool:
    """Whether ``path`` exists in the base's filesystem, from its layer listings (top layer first)."""
    want = path.strip("/")
    parent, name = posixpath.split(want)
    for layer in reversed(base.layers):
        blob = layout.blobs / layer.digest.split(":", 1)[1]
        try:
            with tarfile.open(blob, "r|*") as tf:
                for member in tf:
                    entry = posixpath.normpath(member.name.lstrip("./").lstrip("/"))
                    if entry == want:
                        return True
                    if entry == posixpath.join(parent, f".wh.{name}"):
                        return False  # deleted by this layer
        except (OSError, tarfile.TarError):
            continue  # unreadable as a tar (foreign media type): no evidence either way
    return False


def check_runtime_base(
    spec: str,
    base: BaseImage,
    layout: OciLayout,
    models: Sequence[object],
    config_dir: Path,
    models_root: str,
) -> None:
    """Refuse (ConfigError, exit 2) real weights on a base with no ComfyUI where the config says."""
    real = real_weights(models, config_dir)
    if not real:
        return  # stand-ins (tests, the quickstart) are fine on any base
    home = comfyui_dir(models_root)
    if base_has_file(layout, base, f"{home}/main.py"):
        return
    shown = ", ".join(real[:3]) + (f" and {len(real) - 3} more" if len(real) > 3 else "")
    profile = profile_for(spec)
    if profile is not None and profile.comfyui_dir != home:
        fix = (
            f"{spec} is a {profile.name} base: set image.models_root: {profile.models_root} "
            f"(ComfyUI lives in {profile.comfyui_dir})"
        )
    else:
        known = ", ".join(p.image for p in PROFILES if not p.image.startswith("REGISTRY"))
        fix = (
            f"use a ComfyUI runtime base: `nomad init --base {known}` (see `nomad base profiles`), "
            "or build nomad's own with `nomad base build` and set image.base; if ComfyUI lives "
            "elsewhere in your base, set image.models_root to <that folder>/models"
        )
    raise ConfigError(
        f"image.base {spec} has no ComfyUI ({home}/main.py is not in its layers), but the image "
        f"would carry real weights ({shown}): a GPU would start it and never serve",
        hint=fix,
    )
