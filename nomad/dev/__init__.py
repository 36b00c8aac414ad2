"""The embedded local stack (``nomad dev``): SeaweedFS S3 + a distribution registry on loopback."""

from nomad.dev.stack import ComponentStatus, Stack, StackInfo, StackStatus

__all__ = ["ComponentStatus", "Stack", "StackInfo", "StackStatus"]
