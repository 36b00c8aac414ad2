"""What was pushed last, per project: ``DATA_DIR/images/pushes/<project>.json`` (read by `nomad up`).

State is per project (keyed by the project name, and by the config file when
the caller knows it): `nomad up` in one project's folder must never launch
another project's image just because that one was pushed last. The old
data-dir-wide ``images/last_push.json`` is still written (with the project
and config path in it) for tools that read it, but a reader that names a
project only accepts a record of that project.

It lives with the push (registry side) so the dependency goes one way:
``nomad.images`` re-exports these names, the registry never imports images.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

LAST_PUSH = "last_push.json"
_KEEP = ("ref", "registry", "repository", "digest", "size_bytes", "tag")


def _project_file(data_dir: Path, project: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", project) or "_"
    return Path(data_dir) / "images" / "pushes" / f"{safe}.json"


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_push(
    data_dir: Path,
    result: dict[str, Any],
    *,
    project: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Record a push so `nomad up` knows what to launch (per project when ``project`` is given)."""
    keep = {k: result[k] for k in _KEEP if k in result}
    if project:
        keep["project"] = project
    if config_path:
        keep["config_path"] = str(Path(config_path).resolve())
    path = Path(data_dir) / "images" / LAST_PUSH
    _write(path, keep)
    if project:
        path = _project_file(data_dir, project)
        _write(path, keep)
    return path


def last_pushed(
    data_dir: Path,
    project: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """The last push of ``project`` (from ``config_path`` when given); without a project, the
    data dir's last push of any project. None when there is none."""
    if project is None:
        return _read(Path(data_dir) / "images" / LAST_PUSH)
    record = _read(_project_file(data_dir, project))
    if record is None:  # a record from before per-project state (no project in it) still counts
        legacy = _read(Path(data_dir) / "images" / LAST_PUSH)
        record = legacy if legacy is not None and "project" not in legacy else None
    if record is None:
        return None
    pushed_from = record.get("config_path")
    if config_path and pushed_from and pushed_from != str(Path(config_path).resolve()):
        return None  # same project name, another nomad.yaml: not this project's image
    return record
