"""Node side of a wake: weights onto a GPU node at the speed of its disk and network.

Public API::

    pull_weights(client, ref, cache, source=, parallel=, streams=)  -> PullResult
    NodeCache(root, max_bytes)        digest-keyed weight cache, LRU eviction
    RegistrySource(client, repo)      blobs through the registry (and its S3 redirect)
    S3Source(storage)                 blobs straight from the registry's bucket
    MountPlan                         -v SRC:DST:ro per weight, or a symlink tree
    PhaseRecorder, PHASES             cold-start phases as structured events
    weights_mode_for(cloud)           "baked" or "fetched" per backend/cloud
    fetch_for_host(ref, cache_dir=, link_into=)   the local/ssh backends' fetched mode
    publish_slim(client, ref)         the image minus its weight layers (what the engine pulls)

See docs/cold-start.md.
"""

from __future__ import annotations

from nomad.node._cache import CacheEntry, NodeCache
from nomad.node._fetch import BlobFetch, CorruptBlobError
from nomad.node._host import fetch_for_host
from nomad.node._image import ImagePlan, WeightLayer, resolve, split_layers
from nomad.node._modes import BAKED, FETCHED, POD_CLOUDS, node_envs, weights_mode_for
from nomad.node._pull import LayerResult, Mount, MountPlan, PullResult, pull_weights
from nomad.node._slim import publish_slim, slim_documents
from nomad.node._source import RegistrySource, S3Source, Target
from nomad.node.phases import PHASES, PhaseRecorder

__all__ = [
    "BAKED",
    "FETCHED",
    "PHASES",
    "POD_CLOUDS",
    "BlobFetch",
    "CacheEntry",
    "CorruptBlobError",
    "ImagePlan",
    "LayerResult",
    "Mount",
    "MountPlan",
    "NodeCache",
    "PhaseRecorder",
    "PullResult",
    "RegistrySource",
    "S3Source",
    "Target",
    "WeightLayer",
    "fetch_for_host",
    "node_envs",
    "publish_slim",
    "pull_weights",
    "resolve",
    "slim_documents",
    "split_layers",
    "weights_mode_for",
]
