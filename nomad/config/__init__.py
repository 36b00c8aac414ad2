"""Configuration: the ``nomad.yaml`` schema, its loader and the env overrides."""

from nomad.config.env import ENV_VARS
from nomad.config.load import find_config, load_config, load_text
from nomad.config.schema import NomadConfig

__all__ = ["ENV_VARS", "NomadConfig", "find_config", "load_config", "load_text"]
