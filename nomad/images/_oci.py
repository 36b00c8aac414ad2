"""OCI layout and descriptor types (they live in :mod:`nomad.registry._oci`; re-exported here).

The dependency goes one way: ``nomad.images`` (build) uses ``nomad.registry``
(OCI content, the distribution API); the registry never imports images.
"""

from __future__ import annotations

from nomad.registry._oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    REF_NAME,
    TO_OCI,
    Descriptor,
    OciLayout,
    canonical_json,
    sha256_digest,
)

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "REF_NAME",
    "TO_OCI",
    "Descriptor",
    "OciLayout",
    "canonical_json",
    "sha256_digest",
]
