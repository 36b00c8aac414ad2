"""The Docker path of the ``local`` backend (the ``docker`` SDK, imported lazily here only).

Used when a Docker engine answers; on machines without one (like CI) the
backend falls back to ``infra.local.command``. Containers are named
``nomad-<cluster>-<gpu>`` and get exactly one GPU each.
"""

from __future__ import annotations

from typing import Any

from nomad.backends.base import LaunchSpec
from nomad.errors import BackendError, NotAvailableError


def available() -> bool:
    """True when the docker SDK is installed and an engine answers ping."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


def _client() -> Any:
    try:
        import docker
    except ImportError:
        raise NotAvailableError(
            "infra.local.mode is docker but the docker Python SDK is not installed",
            hint="pip install docker, or set infra.local.mode: command",
        ) from None
    try:
        return docker.from_env(timeout=10)
    except Exception as exc:
        raise BackendError(
            f"no Docker engine reachable: {exc}",
            hint="start Docker or set infra.local.mode: command",
        ) from exc


def run(
    spec: LaunchSpec,
    ports: list[int],
    *,
    image: str | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Start one container per GPU publishing ComfyUI's port; return container ids.

    Fetched weights: ``image`` is the slim ``node.base_image`` and ``volumes`` bind each cached
    weight read-only where the full image had it."""
    client = _client()  # translates a missing SDK / engine first
    import docker

    ids = []
    for gpu, port in enumerate(ports):
        try:
            c = client.containers.run(
                image or spec.image_ref,
                name=f"nomad-{spec.cluster_name}-{gpu}",
                detach=True,
                environment={**spec.envs, "NOMAD_COMFY_PORT": "8188"},
                ports={"8188/tcp": ("127.0.0.1", port)},
                device_requests=[
                    docker.types.DeviceRequest(device_ids=[str(gpu)], capabilities=[["gpu"]])
                ],
                volumes=volumes or {},
                labels={
                    "nomad.cluster": spec.cluster_name,
                    "nomad.gpu": str(gpu),
                    "nomad.port": str(port),
                },
            )
        except Exception as exc:
            remove(spec.cluster_name)
            raise BackendError(
                f"docker could not start {image or spec.image_ref}: {exc}",
                hint="check `docker info` and the image ref",
            ) from exc
        ids.append(str(c.id))
    return ids


def containers(cluster_name: str) -> list[tuple[int, int, bool]]:
    """``(gpu, host port, running)`` per container of the cluster; [] with none or no engine."""
    if not available():
        return []
    rows = []
    found = _client().containers.list(all=True, filters={"label": f"nomad.cluster={cluster_name}"})
    for c in found:
        labels = c.labels or {}
        rows.append(
            (
                int(labels.get("nomad.gpu", 0)),
                int(labels.get("nomad.port", 0)),
                c.status == "running",
            )
        )
    return sorted(rows)


def remove(cluster_name: str) -> None:
    """Force-remove every container of the cluster; none is fine."""
    if not available():
        return
    client = _client()
    for c in client.containers.list(all=True, filters={"label": f"nomad.cluster={cluster_name}"}):
        c.remove(force=True)


def stopped_reason(cluster_name: str, lines: int = 20) -> str | None:
    """A stopped container of the cluster, its exit code and the tail of its log; None if all run."""
    if not available():
        return None
    found = _client().containers.list(all=True, filters={"label": f"nomad.cluster={cluster_name}"})
    for c in found:
        if c.status == "running":
            continue
        code = (c.attrs.get("State") or {}).get("ExitCode")
        try:
            logs = c.logs(tail=lines).decode("utf-8", "replace").rstrip()
        except Exception as exc:  # the SDK raises its own APIError family
            logs = f"(docker logs failed: {exc})"
        return (
            f"container {c.name} {c.status} (exit code {code}) during start-up; last lines:\n{logs}"
        )
    return None
