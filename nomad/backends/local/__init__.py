"""The ``local`` backend: ComfyUI on this machine or your own GPU workstation."""

from nomad.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
