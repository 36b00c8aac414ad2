"""The ``ssh`` backend: SSH hosts as a SkyPilot SSH node pool."""

from nomad.backends.ssh.backend import SSHBackend

__all__ = ["SSHBackend"]
