"""What was pushed last from a data dir: ``DATA_DIR/images/last_push.json`` (read by `nomad up`).

It lives with the push (registry side) so the dependency goes one way:
``nomad.images`` re-exports these names, the registry never imports images.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LAST_PUSH = "last_push.json"


def record_push(data_dir: Path, result: dict[str, Any]) -> Path:
    """Write data_dir/images/last_push.json so `nomad up` knows what to launch."""
    path = Path(data_dir) / "images" / LAST_PUSH
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = {
        k: result[k]
        for k in ("ref", "registry", "repository", "digest", "size_bytes", "tag")
        if k in result
    }
    tmp = path.with_name(f".{LAST_PUSH}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(keep, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path


def last_pushed(data_dir: Path) -> dict[str, Any] | None:
    """The last successful push from this data dir, or None when nothing was pushed yet."""
    try:
        data = json.loads((Path(data_dir) / "images" / LAST_PUSH).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None
