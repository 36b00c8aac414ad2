"""What batch code needs from the deployment besides the job list (set once, passed down)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nomad.config.schema import NomadConfig


@dataclass(frozen=True)
class BatchEnv:
    """Workflow folders (to find seed parameters) and the folder user hooks are imported from."""

    workflow_dirs: tuple[str, ...] = ()
    hook_dir: Path | None = None
    config_path: Path | None = None

    @classmethod
    def from_config(cls, cfg: NomadConfig, config_path: Path | None) -> BatchEnv:
        """The env of a loaded nomad.yaml (hooks may sit next to it)."""
        hook_dir = config_path.resolve().parent if config_path else Path.cwd()
        return cls(tuple(cfg.workflows.dirs), hook_dir, config_path)
