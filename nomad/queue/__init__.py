"""The durable job queue: :func:`open_queue` picks PostgreSQL or SQLite from a URL.

``queue.url`` empty ⇒ SQLite at ``<data dir>/queue.db`` (the embedded
default); ``postgresql://…`` ⇒ PostgreSQL; ``sqlite:///path`` ⇒ that file.
Both implement :class:`nomad.queue.base.JobQueue` with the same behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad.errors import ConfigError
from nomad.queue._sql import Limits
from nomad.queue.base import PHASES, Job, JobQueue, JobStatus

if TYPE_CHECKING:
    from nomad.config.schema import NomadConfig, QueueConfig

__all__ = ["PHASES", "Job", "JobQueue", "JobStatus", "Limits", "open_queue"]


def open_queue(
    url_or_config: str | QueueConfig | NomadConfig | None, data_dir: str | Path, **overrides: Any
) -> JobQueue:
    """Open (and migrate) the queue named by a URL or by the ``queue:`` config section."""
    url, kwargs = _settings(url_or_config)
    kwargs.update(overrides)
    if not url:
        from nomad.queue.sqlite import SQLiteQueue

        return SQLiteQueue(Path(data_dir) / "queue.db", **kwargs)
    if url.startswith("sqlite://"):
        from nomad.queue.sqlite import SQLiteQueue

        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise ConfigError(
                "queue.url sqlite:// needs a path, e.g. sqlite:////var/lib/nomad/queue.db"
            )
        return SQLiteQueue(
            Path("/" + path) if url.startswith("sqlite:////") else Path(path), **kwargs
        )
    if url.startswith(("postgresql://", "postgres://")):
        from nomad.queue.postgres import PostgresQueue

        return PostgresQueue(url, **kwargs)
    scheme = url.split(":", 1)[0]
    raise ConfigError(
        f"queue.url: unsupported scheme {scheme!r}",
        hint="use postgresql://user@host/db, sqlite:///relative.db, or leave it empty",
    )


def _settings(src: str | QueueConfig | NomadConfig | None) -> tuple[str | None, dict[str, Any]]:
    if src is None or isinstance(src, str):
        return src, {}
    from nomad.config.schema import NomadConfig

    qc = src.queue if isinstance(src, NomadConfig) else src
    url = qc.url.get_secret_value() if qc.url is not None else None
    limits = Limits(in_flight=qc.limits.in_flight_per_user, per_day=qc.limits.per_day_per_user)
    return url, {
        "lease_seconds": qc.lease_seconds,
        "max_attempts": qc.max_attempts,
        "limits": limits,
    }
