"""Refuse to send a GPU what it cannot reach — before anything is launched or paid for.

A remote GPU node (any cloud through SkyPilot, a rented SSH box) pulls the
image itself. A registry on this machine's loopback, on a link-local address
or behind plain HTTP is one it cannot use: docker on the node cannot reach
your 127.0.0.1, link-local addresses exist only on your own link, and docker
refuses plain-HTTP registries (and the login would cross the internet in
clear). Launching anyway burns paid minutes until the health wait times out,
so ``nomad up`` (``--dry-run`` too) and ``nomad serve`` check first.

The ``local`` backend runs on this machine, where loopback is exactly right.
"""

from __future__ import annotations

import ipaddress

import httpx

from nomad.errors import ConfigError

__all__ = ["REMOTE_BACKENDS", "check_node_can_pull", "registry_problem", "split_registry"]

REMOTE_BACKENDS = frozenset({"skypilot", "ssh", "fleet"})
FIX = (
    "push to a registry the GPU node can reach over HTTPS: set registry.url (e.g. "
    "https://registry.example.com), then `nomad push`; to serve one from your own S3 bucket see "
    "`nomad registry config` and docs/going-real.md; for a GPU on this machine use infra.backend: local"
)


def split_registry(image_ref: str) -> str:
    """The registry host[:port] of an image reference (docker's rule: no dot/colon ⇒ Docker Hub)."""
    first, sep, _rest = image_ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _host_only(netloc: str) -> str:
    if netloc.startswith("["):  # [::1]:5000
        return netloc[1:].partition("]")[0]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def registry_problem(image_ref: str, registry_url: str | None) -> str | None:
    """Why a remote node could not pull ``image_ref`` (None: nothing nomad can tell is wrong)."""
    netloc = split_registry(image_ref)
    host = _host_only(netloc).lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"its registry {netloc} is this machine's loopback"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or ip.is_unspecified):
        return f"its registry {netloc} is this machine's loopback"
    if ip is not None and ip.is_link_local:
        return f"its registry {netloc} is a link-local address, reachable only on your own network link"
    plain = registry_url is not None and registry_url.startswith("http://")
    if plain and httpx.URL(registry_url or "").netloc.decode().lower() == netloc.lower():
        return f"its registry {registry_url} is plain HTTP, which docker on the node refuses"
    return None


def check_node_can_pull(image_ref: str, backend: str, registry_url: str | None) -> None:
    """Raise :class:`ConfigError` (exit 2) when a remote ``backend`` node could not pull ``image_ref``."""
    if backend not in REMOTE_BACKENDS or not image_ref:
        return
    problem = registry_problem(image_ref, registry_url)
    if problem is not None:
        raise ConfigError(
            f"refusing to launch {image_ref} on the {backend} backend: {problem}; "
            "the GPU node could not pull it and would bill until it timed out",
            hint=FIX,
        )
