"""The queue line of ``nomad status``: depth, cluster state, ETA, today's spend.

Read-only and cheap: it never creates a queue database that does not exist
(a machine that never ran ``nomad serve`` shows no queue section).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nomad.config.schema import NomadConfig
from nomad.queue import JobStatus, open_queue

STALE_AFTER_S = 30.0  # an autoscaler status older than this means `nomad serve` is not running


def queue_summary(config: NomadConfig, data_dir: Path) -> dict[str, Any] | None:
    """Queue depth per status, the autoscaler's published state, spend today; None without a queue."""
    if config.queue.url is None and not (Path(data_dir) / "queue.db").exists():
        return None
    queue = open_queue(config, data_dir)
    try:
        counts = queue.counts()
        doc = queue.get_state("autoscaler", "status") or {}
        now = time.time()
        stats = queue.stats_since(now - now % 86400)
    finally:
        queue.close()
    updated = doc.get("updated_at")
    live = isinstance(updated, int | float) and now - updated < STALE_AFTER_S
    return {
        "waiting": counts[JobStatus.QUEUED] + counts[JobStatus.WAKING],
        "running": counts[JobStatus.RUNNING],
        "counts": {s.value: n for s, n in counts.items()},
        "serve_running": live,
        "cluster": doc.get("state", "cold") if live else "unknown (nomad serve not running)",
        "eta_seconds": doc.get("eta_seconds") if live else None,
        "detail": doc.get("detail") if live else None,
        "gpu_spend_today": doc.get("spend_today"),
        "job_cost_today": round(stats["cost"], 4),
        "jobs_today": int(stats["jobs"]),
    }
