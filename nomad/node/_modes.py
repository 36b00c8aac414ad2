"""Baked or fetched: how weights reach a node, chosen per backend and cloud.

* **baked** — the provider pulls the whole image. Required where the image
  *is* the pod (RunPod, Vast, Kubernetes): nomad gets no host to run on.
* **fetched** — the engine pulls the small rest of the image, nomad fetches
  the weight layers into its digest-keyed cache and bind-mounts them
  read-only. Where nomad controls the host: VM clouds, ssh boxes, local.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nomad.errors import ConfigError

BAKED = "baked"
FETCHED = "fetched"
# clouds where SkyPilot runs the image as the pod itself
POD_CLOUDS = frozenset({"runpod", "vast", "kubernetes", "k8s"})


def weights_mode_for(clouds: Iterable[str], requested: str = "auto") -> str:
    """``requested`` unless "auto": fetched only when every candidate cloud gives nomad a host.

    An empty ``clouds`` means "any enabled cloud", which may be a pod cloud: baked.
    """
    names = [c.lower() for c in clouds if c and c != "any"]
    if requested == FETCHED and any(c in POD_CLOUDS for c in names):
        pods = ", ".join(sorted(c for c in names if c in POD_CLOUDS))
        raise ConfigError(
            f"weights mode 'fetched' cannot work on {pods}: there the image is the pod",
            hint="use node.weights: baked (or auto) for container-as-pod clouds",
        )
    if requested in (BAKED, FETCHED):
        return requested
    if requested != "auto":
        raise ConfigError(f"unknown weights mode {requested!r}", hint="auto, baked or fetched")
    if not names or any(c in POD_CLOUDS for c in names):
        return BAKED
    return FETCHED


def node_envs(cfg: Any) -> dict[str, str]:
    """The ``node:`` config as the environment a launch hands to the node (LaunchSpec.envs)."""
    n = cfg.node
    env = {"NOMAD_WEIGHTS_MODE": n.weights, "NOMAD_NODE_CACHE": n.cache_dir}
    if n.base_image:
        env["NOMAD_BASE_IMAGE"] = n.base_image
    if n.cache_max_gb:
        env["NOMAD_NODE_CACHE_LIMIT"] = f"{n.cache_max_gb:g}G"
    return env
