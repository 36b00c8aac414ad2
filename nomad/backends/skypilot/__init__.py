"""The ``skypilot`` backend; ``sky`` is imported lazily, only in this package."""

from nomad.backends.skypilot.backend import SkyPilotBackend

__all__ = ["SkyPilotBackend"]
