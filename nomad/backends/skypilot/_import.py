"""The one door to the ``sky`` package: lazy, with an install hint when it is missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from nomad.errors import NotAvailableError

INSTALL_HINT = "pip install 'nomad-comfy[sky]'"


def sky_available() -> bool:
    """True when SkyPilot can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("sky") is not None
    except (ImportError, ValueError):
        return False


def require_sky() -> None:
    """Raise NotAvailableError with the install hint when SkyPilot is missing."""
    if not sky_available():
        raise NotAvailableError(
            "the skypilot backend needs SkyPilot, which is not installed", hint=INSTALL_HINT
        )


def import_sky() -> ModuleType:
    """``import sky`` (slow: ~3 s), translated to NotAvailableError when missing."""
    require_sky()
    try:
        return importlib.import_module("sky")
    except ImportError as exc:
        raise NotAvailableError(f"SkyPilot failed to import: {exc}", hint=INSTALL_HINT) from exc
