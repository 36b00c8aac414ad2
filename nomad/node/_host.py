"""One call for backends that own the host (local, ssh): weights in, mounts out.

The local backend's fetched mode is::

    result = fetch_for_host(spec.image_ref, cache_dir=…, link_into=models_dir)   # process mode
    docker_args += result.mounts.docker_args()                                  # docker mode

and then starts ComfyUI from the slim image (docker) or the host's ComfyUI
(process) exactly as it does today.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nomad.node._cache import NodeCache
from nomad.node._pull import Emit, PullResult, pull_weights
from nomad.node.phases import PhaseRecorder


def fetch_for_host(
    image_ref: str,
    *,
    cache_dir: Path,
    cache_limit: int | None = None,
    username: str | None = None,
    password: str | None = None,
    insecure: bool = False,
    link_into: Path | None = None,
    recorder: PhaseRecorder | None = None,
    emit: Emit | None = None,
    proxy: str | None = None,
    **pull_kw: Any,
) -> PullResult:
    """Pull ``image_ref``'s weights into ``cache_dir``; optionally symlink them into a models dir.

    ``proxy``: the registry leg's SOCKS5h proxy; manifests and blob ranges (S3 redirects
    included) go through it. None is direct.
    """
    from nomad.registry import RegistryClient, base_url_for, parse_reference

    ref = parse_reference(image_ref.removeprefix("docker:"))
    cache = NodeCache(Path(cache_dir).expanduser(), cache_limit)
    with RegistryClient(
        base_url_for(ref.host, insecure), username=username, password=password, proxy=proxy
    ) as client:
        if recorder is None:
            result = pull_weights(client, ref, cache, emit=emit, **pull_kw)
        else:
            with recorder.phase("weights_fetch", ref=image_ref) as extra:
                result = pull_weights(client, ref, cache, emit=emit, **pull_kw)
                extra.update(bytes_moved=result.bytes_moved, weight_bytes=result.weight_bytes)
    if link_into is not None:
        result.mounts.link_tree(Path(link_into))
    return result
