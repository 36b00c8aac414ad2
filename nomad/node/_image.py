"""Which layers of an image are weights: read from what ``nomad build`` records.

``nomad build`` appends one layer per model file and records, in the image
config, a history entry ``created_by: "nomad: model <dest>"`` per such layer
and the label ``io.nomad.models`` (dest, file sha256, size per model). History
entries without ``empty_layer`` pair one-to-one with layers, and nomad's own
layers are the last ones, so we pair from the end. Tools that re-compress
the image (skopeo with gzip) keep the config, so the pairing survives; their
layer media type says how to read the bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from nomad.errors import ModelFetchError
from nomad.registry import Reference, RegistryClient
from nomad.registry._oci import DOCKER_LIST, OCI_INDEX, Descriptor, pick_platform

MODEL_PREFIX = "nomad: model "
MODELS_LABEL = "io.nomad.models"
MODELS_ROOT_ENV = "NOMAD_MODELS_ROOT"


@dataclass(frozen=True)
class WeightLayer:
    """One weight layer: the blob, and the file it holds."""

    layer: Descriptor
    dest: str  # under the models root, e.g. vae/ae.safetensors
    file_size: int | None  # from the io.nomad.models label, when present
    file_sha256: str | None


@dataclass(frozen=True)
class ImagePlan:
    """The image split into what the container engine pulls and what nomad fetches."""

    ref: Reference
    manifest_digest: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    weights: list[WeightLayer]
    other_layers: list[Descriptor]
    models_root: str

    @property
    def weight_bytes(self) -> int:
        return sum(w.layer.size for w in self.weights)


def _sha(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def resolve(client: RegistryClient, ref: Reference) -> ImagePlan:
    """Manifest (linux/amd64 from an index) + config, and the weight layers in it."""
    raw, media = client.get_manifest(ref.repository, ref.target)
    doc = json.loads(raw)
    if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in doc:
        chosen = pick_platform(doc, str(ref))
        raw, media = client.get_manifest(ref.repository, chosen.digest)
        doc = json.loads(raw)
    digest = _sha(raw)
    cfg_desc = Descriptor.from_json(doc["config"])
    cfg = _blob_json(client, ref.repository, cfg_desc)
    layers = [Descriptor.from_json(d) for d in doc.get("layers") or []]
    weights, others = split_layers(layers, cfg)
    env = dict(e.split("=", 1) for e in (cfg.get("config") or {}).get("Env") or [] if "=" in e)
    return ImagePlan(
        ref=ref,
        manifest_digest=digest,
        manifest=doc,
        config=cfg,
        weights=weights,
        other_layers=others,
        models_root=env.get(MODELS_ROOT_ENV, "/opt/ComfyUI/models"),
    )


def _blob_json(client: RegistryClient, repo: str, d: Descriptor) -> dict[str, Any]:
    resp = client.request(
        "GET", f"/v2/{repo}/blobs/{d.digest}", repo=repo, what=f"GET config {d.digest}"
    )
    if resp.status_code != 200 or _sha(resp.content) != d.digest:
        raise ModelFetchError(
            f"registry {client.host}: config {d.digest} of {repo} could not be read "
            f"(HTTP {resp.status_code})"
        )
    out = json.loads(resp.content)
    if not isinstance(out, dict):
        raise ModelFetchError(f"config {d.digest} of {repo} is not a JSON object")
    return out


def split_layers(
    layers: list[Descriptor], config: dict[str, Any]
) -> tuple[list[WeightLayer], list[Descriptor]]:
    """Pair non-empty history entries with layers from the end; nomad's model entries are weights."""
    history = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    labels = (config.get("config") or {}).get("Labels") or {}
    models = {m["dest"]: m for m in json.loads(labels.get(MODELS_LABEL) or "[]")}
    weights: list[WeightLayer] = []
    others: list[Descriptor] = []
    offset = len(layers) - len(history)
    for i, layer in enumerate(layers):
        h = history[i - offset] if 0 <= i - offset < len(history) else {}
        created = str(h.get("created_by") or "")
        if created.startswith(MODEL_PREFIX):
            dest = created[len(MODEL_PREFIX) :]
            meta = models.get(dest) or {}
            weights.append(
                WeightLayer(
                    layer,
                    dest,
                    int(meta["size"]) if "size" in meta else None,
                    str(meta["sha256"]) if "sha256" in meta else None,
                )
            )
        else:
            others.append(layer)
    return weights, others
