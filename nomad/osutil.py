"""Two questions about this machine that several subsystems ask: is that process alive, is that port free.

One answer each, so the ledger (is the launching process still there?), the
serve lease (is the leader alive?), the local backend's supervisor and the
managed anon client agree — a zombie is dead to all of them, and a port in
TIME_WAIT is free to all of them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a zombie still answers ``kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now.

    SO_REUSEADDR as the daemons use it (aiohttp, ComfyUI, SeaweedFS): connections
    lingering in TIME_WAIT after a restart must not count as "taken".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
