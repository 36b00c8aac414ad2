"""File names and the atomic writer shared by the local backend and its supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CLUSTER_FILE = "cluster.json"  # written by LocalBackend: ports, urls, window, servers' argv
SUPERVISOR_FILE = "supervisor.json"  # written by LocalBackend: the supervisor's pid
PIDS_FILE = "pids.json"  # written by the supervisor: its servers' pids
EXITS_FILE = "exits.json"  # written by the supervisor: exit codes of servers that ended
HS_FILE = "hs.json"  # written by the supervisor: its hidden-service client (privacy.node)
STOPPED_FILE = "stopped.json"  # written by the supervisor when it stopped the cluster itself


def write_json(path: Path, value: Any) -> None:
    """Atomically replace ``path`` (readers never see half a file); owner-only permissions."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
