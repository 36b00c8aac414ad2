"""The ``fleet`` backend: cloud, SSH pools and this box as one list of offers."""

from nomad.backends.fleet.backend import FleetBackend, member_key

__all__ = ["FleetBackend", "member_key"]
