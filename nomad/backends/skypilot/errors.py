"""SkyPilot exceptions → nomad's error tree, each with what to do next.

Matching is by class name so this module never imports ``sky`` itself.
"""

from __future__ import annotations

from nomad.errors import (
    BackendError,
    ClusterNotFoundError,
    NoCapacityError,
    NoCloudAccessError,
    NomadError,
    QuotaError,
)

_QUOTA_WORDS = ("quota", "limitexceeded", "vcpulimit", "insufficient_quota")


def translate(exc: BaseException, *, cluster: str | None = None) -> NomadError:
    """The nomad error for a SkyPilot exception (message + hint); unknown ones become BackendError."""
    if isinstance(exc, NomadError):
        return exc
    kind = type(exc).__name__
    text = _full_text(exc)
    on = f" for cluster {cluster!r}" if cluster else ""
    if kind == "ResourcesUnavailableError" and any(w in text.lower() for w in _QUOTA_WORDS):
        return QuotaError(
            f"the provider refused{on} for quota reasons: {_first_line(exc)}",
            hint="request a GPU quota increase with the provider, or allow other clouds/GPUs in infra",
        )
    if kind == "ResourcesUnavailableError":
        return NoCapacityError(
            f"no capacity{on} on any candidate offer: {_first_line(exc)}",
            hint="allow more GPUs/clouds/regions in infra, raise infra.max_price_per_hour, "
            "or retry later (`nomad up` retries the next offer)",
        )
    if kind in ("NoCloudAccessError", "InvalidCloudCredentials", "CloudUserIdentityError"):
        from nomad.cloud_access import no_cloud_hint

        return NoCloudAccessError(
            f"no cloud is usable{on}: {_first_line(exc)}", hint=no_cloud_hint()
        )
    if kind == "ClusterDoesNotExist":
        return ClusterNotFoundError(
            f"no cluster{on}: {_first_line(exc)}", hint="see `nomad status`"
        )
    if kind in ("ApiServerConnectionError", "NetworkError"):
        return BackendError(
            f"cannot reach the SkyPilot API server{on}: {_first_line(exc)}",
            hint="run `sky api start` (or `sky api info`) and retry",
        )
    return BackendError(
        f"SkyPilot failed{on}: {kind}: {_first_line(exc)}", hint="rerun with -vv for details"
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _full_text(exc: BaseException) -> str:
    parts = [str(exc)]
    for sub in getattr(exc, "failover_history", None) or []:
        parts.append(f"{type(sub).__name__}: {sub}")
    return "\n".join(parts)
