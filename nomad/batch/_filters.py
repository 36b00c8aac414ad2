"""Checks run on each output before it is stored ("after some basic filtering").

Built-ins catch what breaks silently: a blank or near-uniform image (a broken
model's flat frame), the wrong pixel size, a file too small to be a result.
User hooks decide the rest: a Python ``module:function`` or a command, each
given the output's file path and answering accept or reject with a reason.

A rejection is a verdict on the image (the slot runs again with a new seed);
a hook that crashes or times out is a broken filter, not a verdict: it
raises :class:`FilterError` and the output is neither stored nor rejected.
Images are decoded with Pillow (lazily imported: only batch filters need it).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad.errors import ConfigError, NomadError

VIDEO_EXTS = {".mp4", ".webm", ".mov", ".gif"}


class FilterError(NomadError):
    """A filter could not decide (hook crashed, timed out, answered nonsense)."""


@dataclass(frozen=True)
class Decision:
    """One check's verdict on one output."""

    check: str
    accepted: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "accepted": self.accepted, "reason": self.reason}


def run_checks(checks: list[Any], data: bytes, ext: str, hook_dir: Path | None) -> list[Decision]:
    """Every check's decision on one output, stopping at the first rejection."""
    out: list[Decision] = []
    if not checks:
        return out
    with tempfile.TemporaryDirectory(prefix="nomad-filter-") as tmp:
        path = Path(tmp) / f"output{ext}"
        path.write_bytes(data)
        for check in checks:
            decision = _one(check, data, ext, path, hook_dir)
            out.append(decision)
            if not decision.accepted:
                break
    return out


def _one(check: Any, data: bytes, ext: str, path: Path, hook_dir: Path | None) -> Decision:
    kind = check.check
    if kind == "min_bytes":
        ok = len(data) >= check.bytes
        return Decision(kind, ok, f"{len(data)} bytes" + ("" if ok else f" < {check.bytes}"))
    if kind in ("blank", "size"):
        if ext.lower() in VIDEO_EXTS:
            return Decision(kind, True, f"skipped: {ext} is not an image")
        stats = image_stats(data)
        return _blank(check, stats) if kind == "blank" else _size(check, stats)
    if kind == "python":
        return _python(check, path, hook_dir)
    if kind == "command":
        return _command(check, path, hook_dir)
    raise ConfigError(f"unknown filter check {kind!r}")


@dataclass(frozen=True)
class ImageStats:
    width: int
    height: int
    stddev: float  # luminance, 0..255


def image_stats(data: bytes) -> ImageStats:
    """Decode an image and measure it; an undecodable file is rejected, not skipped."""
    import io

    try:
        from PIL import Image, ImageStat
    except ImportError as exc:  # pragma: no cover - pillow is a core dependency
        raise FilterError("image checks need Pillow", hint="pip install pillow") from exc
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            gray = img.convert("L")
            return ImageStats(img.width, img.height, float(ImageStat.Stat(gray).stddev[0]))
    except Exception as exc:  # PIL raises many kinds for corrupt data
        return ImageStats(0, 0, -1.0) if _is_decode_error(exc) else _raise(exc)


def _is_decode_error(exc: Exception) -> bool:
    return isinstance(exc, OSError | ValueError | SyntaxError)


def _raise(exc: Exception) -> ImageStats:
    raise FilterError(f"image check failed: {type(exc).__name__}: {exc}") from exc


def _blank(check: Any, s: ImageStats) -> Decision:
    if s.stddev < 0:
        return Decision("blank", False, "not a decodable image")
    ok = s.stddev >= check.min_stddev
    verdict = "" if ok else f" < {check.min_stddev}: blank or near-uniform"
    return Decision("blank", ok, f"luminance stddev {s.stddev:.2f}{verdict}")


def _size(check: Any, s: ImageStats) -> Decision:
    if s.stddev < 0:
        return Decision("size", False, "not a decodable image")
    wrong = []
    if check.width is not None and s.width != check.width:
        wrong.append(f"width {s.width} != {check.width}")
    if check.height is not None and s.height != check.height:
        wrong.append(f"height {s.height} != {check.height}")
    if check.min_width is not None and s.width < check.min_width:
        wrong.append(f"width {s.width} < {check.min_width}")
    if check.min_height is not None and s.height < check.min_height:
        wrong.append(f"height {s.height} < {check.min_height}")
    return Decision("size", not wrong, "; ".join(wrong) or f"{s.width}x{s.height}")


def load_hook(entry: str, hook_dir: Path | None) -> Callable[[str], Any]:
    """Import ``module:function`` (a module next to nomad.yaml is found); ConfigError if missing."""
    module_name, _, func_name = entry.partition(":")
    added = hook_dir is not None and str(hook_dir) not in sys.path
    if added:
        sys.path.insert(0, str(hook_dir))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"filter hook {entry}: cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        if added:
            sys.path.remove(str(hook_dir))
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"filter hook {entry}: {module_name} has no function {func_name}")
    return func  # type: ignore[no-any-return]


def _python(check: Any, path: Path, hook_dir: Path | None) -> Decision:
    func = load_hook(check.entry, hook_dir)
    try:
        answer = func(str(path))
    except Exception as exc:
        raise FilterError(f"filter hook {check.entry} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(answer, bool):
        return Decision("python", answer, "accepted" if answer else "rejected")
    if (
        isinstance(answer, tuple)
        and len(answer) == 2
        and isinstance(answer[0], bool)
        and isinstance(answer[1], str)
    ):
        return Decision("python", answer[0], answer[1] or ("accepted" if answer[0] else "rejected"))
    raise FilterError(
        f"filter hook {check.entry} returned {answer!r}",
        hint="return True/False or (accepted: bool, reason: str)",
    )


def _command(check: Any, path: Path, hook_dir: Path | None) -> Decision:
    argv = [a.replace("{path}", str(path)) for a in check.argv]
    if "{path}" not in " ".join(check.argv):
        argv.append(str(path))
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=check.timeout, cwd=hook_dir, check=False
        )
    except subprocess.TimeoutExpired:
        raise FilterError(
            f"filter command {check.argv[0]} timed out after {check.timeout:g} s"
        ) from None
    except OSError as exc:
        raise FilterError(f"filter command {check.argv[0]} could not run: {exc.strerror}") from None
    reason = (done.stdout.strip().splitlines() or [""])[0][:300]
    if done.returncode in (0, 1):
        ok = done.returncode == 0
        return Decision("command", ok, reason or ("accepted" if ok else "rejected"))
    err = (done.stderr.strip().splitlines() or [""])[-1][:300]
    raise FilterError(
        f"filter command {check.argv[0]} exited {done.returncode}: {err}",
        hint="exit 0 to accept, 1 to reject (first stdout line = reason)",
    )
