"""SkyPilot exceptions → nomad's error tree, each with what to do next.

Matching is by SkyPilot's exception hierarchy (``isinstance`` against
``sky.exceptions`` classes), not by class name: SkyPilot subclasses its errors
(``KubeAPIUnreachableError`` *is a* ``ResourcesUnavailableError``, so nomad
tries the next offer), and a name match silently misses every subclass. The
module is looked up in ``sys.modules`` (an exception raised by SkyPilot means
it is loaded), so this module never imports ``sky`` for nothing.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from nomad.errors import (
    BackendError,
    ClusterNotFoundError,
    NoCapacityError,
    NoCloudAccessError,
    NomadError,
    QuotaError,
)

_QUOTA_WORDS = ("quota", "limitexceeded", "vcpulimit", "insufficient_quota")


def sky_exceptions(exc: BaseException | None = None) -> ModuleType | None:
    """``sky.exceptions`` when SkyPilot is loaded (or ``exc`` came from it), else None."""
    mod = sys.modules.get("sky.exceptions")
    if mod is None and exc is not None and type(exc).__module__.split(".")[0] == "sky":
        mod = importlib.import_module("sky.exceptions")
    return mod


def is_sky(exc: BaseException, *names: str) -> bool:
    """Whether ``exc`` is an instance of (a subclass of) any of SkyPilot's ``names`` classes."""
    mod = sky_exceptions(exc)
    if mod is None:
        return False
    classes = tuple(c for n in names if isinstance(c := getattr(mod, n, None), type))
    return bool(classes) and isinstance(exc, classes)


def translate(exc: BaseException, *, cluster: str | None = None) -> NomadError:
    """The nomad error for a SkyPilot exception (message + hint); unknown ones become BackendError."""
    if isinstance(exc, NomadError):
        return exc
    kind = type(exc).__name__
    text = _full_text(exc)
    on = f" for cluster {cluster!r}" if cluster else ""
    unavailable = is_sky(exc, "ResourcesUnavailableError")
    if unavailable and any(w in text.lower() for w in _QUOTA_WORDS):
        return QuotaError(
            f"the provider refused{on} for quota reasons: {_first_line(exc)}",
            hint="request a GPU quota increase with the provider, or allow other clouds/GPUs in infra",
        )
    if unavailable:  # KubeAPIUnreachableError and any later subclass included
        return NoCapacityError(
            f"no capacity{on} on any candidate offer: {kind}: {_first_line(exc)}",
            hint="allow more GPUs/clouds/regions in infra, raise infra.max_price_per_hour, "
            "or retry later (`nomad up` retries the next offer)",
        )
    if is_sky(exc, "NoCloudAccessError", "InvalidCloudCredentials", "CloudUserIdentityError"):
        from nomad.cloud_access import no_cloud_hint

        return NoCloudAccessError(
            f"no cloud is usable{on}: {_first_line(exc)}", hint=no_cloud_hint()
        )
    if is_sky(exc, "ClusterDoesNotExist"):
        return ClusterNotFoundError(
            f"no cluster{on}: {_first_line(exc)}", hint="see `nomad status`"
        )
    if is_sky(exc, "ApiServerConnectionError", "NetworkError"):
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
