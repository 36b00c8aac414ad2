"""State built once in the group and passed to every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nomad.config import NomadConfig


@dataclass
class Ctx:
    """Lazily loads the config so commands that don't need it never fail on it."""

    config_path: str | None = None
    data_dir_opt: str | None = None
    verbose: int = 0
    _config: NomadConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> NomadConfig:
        if self._config is None:
            from nomad import privacy
            from nomad.config import load_config

            self._config = load_config(self.config_path)
            # every proxied connect's deadline; a managed client starts on the first one
            privacy.configure(self._config.privacy, data_dir=self.data_dir)
        return self._config

    @property
    def data_dir(self) -> Path:
        from nomad.paths import data_dir

        return data_dir(self.data_dir_opt)

    @property
    def config_dir(self) -> Path:
        """Relative paths in nomad.yaml are resolved against the config file's folder."""
        from nomad.config import find_config

        found = find_config(self.config_path)
        return found.resolve().parent if found else Path.cwd()
