"""The slim twin of an image: the same manifest minus its weight layers.

In fetched mode the container engine pulls this (runtime base + workflows,
small) while ``nomad node pull`` brings the weights. It is derived, not
built: the remaining layer blobs are already in the repository, so
publishing it uploads one small config and one manifest. The full image
stays the artifact of record; the slim manifest names it in an annotation.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from nomad.node._image import resolve
from nomad.registry import Reference, RegistryClient
from nomad.registry._oci import OCI_CONFIG, OCI_MANIFEST, canonical_json, sha256_digest

FULL_ANNOTATION = "io.nomad.weights.from"


def slim_documents(manifest: dict[str, Any], config: dict[str, Any], weights: set[str],
                   full_digest: str) -> tuple[bytes, bytes]:  # fmt: skip
    """(config, manifest) bytes without the layers in ``weights`` (and their diff_ids/history)."""
    layers = manifest.get("layers") or []
    keep = [i for i, d in enumerate(layers) if d["digest"] not in weights]
    cfg = json.loads(json.dumps(config))
    diff_ids = (cfg.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) == len(layers):
        cfg["rootfs"]["diff_ids"] = [diff_ids[i] for i in keep]
    history = cfg.get("history") or []
    non_empty = [i for i, h in enumerate(history) if not h.get("empty_layer")]
    offset = len(layers) - len(non_empty)
    dropped = {non_empty[i - offset] for i, d in enumerate(layers)
               if d["digest"] in weights and 0 <= i - offset < len(non_empty)}  # fmt: skip
    cfg["history"] = [h for i, h in enumerate(history) if i not in dropped]
    cfg_bytes = canonical_json(cfg)
    man = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(cfg_bytes),
            "size": len(cfg_bytes),
        },
        "layers": [layers[i] for i in keep],
        "annotations": {FULL_ANNOTATION: full_digest},
    }
    return cfg_bytes, canonical_json(man)


def publish_slim(client: RegistryClient, ref: Reference) -> str:
    """Push the slim twin of ``ref`` into the same repository; return ``host/repo@digest``."""
    plan = resolve(client, ref)
    cfg_bytes, man_bytes = slim_documents(
        plan.manifest, plan.config, {w.layer.digest for w in plan.weights}, plan.manifest_digest
    )
    cfg_digest = sha256_digest(cfg_bytes)
    if not client.has_blob(ref.repository, cfg_digest):
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "config.json"
            p.write_bytes(cfg_bytes)
            client.upload_blob(ref.repository, cfg_digest, len(cfg_bytes), p)
    digest = sha256_digest(man_bytes)
    client.put_manifest(ref.repository, digest, man_bytes, OCI_MANIFEST, digest)
    return f"{ref.host}/{ref.repository}@{digest}"
