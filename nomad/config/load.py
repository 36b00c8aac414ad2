"""Load ``nomad.yaml`` with errors that name the file, the line and the key.

PyYAML's composed node tree keeps line marks; pydantic's error ``loc`` is a
path into the data. Walking the node tree along ``loc`` gives the line of the
offending key, so every error reads ``nomad.yaml:12: infra.gpus: …``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nomad.config.env import ENV_VARS
from nomad.config.schema import NomadConfig
from nomad.errors import ConfigError

DEFAULT_NAME = "nomad.yaml"


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config path to use: explicit, then $NOMAD_CONFIG, then ./nomad.yaml if present."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("NOMAD_CONFIG")
    if env:
        return Path(env)
    here = Path.cwd() / DEFAULT_NAME
    return here if here.exists() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> NomadConfig:
    """Parse, apply ``NOMAD_*`` overrides and validate; raise :class:`ConfigError` on any fault."""
    environ = os.environ if environ is None else environ
    cfg_path = find_config(path)
    data: dict[str, Any] = {}
    root: yaml.Node | None = None
    if cfg_path is not None:
        data, root = _read_yaml(cfg_path)
    _apply_env(data, environ)
    try:
        cfg = NomadConfig.model_validate(data)
    except ValidationError as exc:
        raise _to_config_error(exc, cfg_path, root) from None
    return _anchor_paths(cfg, cfg_path.resolve().parent if cfg_path else Path.cwd())


def _anchor_paths(cfg: NomadConfig, base: Path) -> NomadConfig:
    """Make folder paths absolute against the config file's folder, once, for every reader.

    Without this each front door (run, serve, web, bot) resolved ``workflows.dirs``
    against its own working directory and they disagreed.
    """
    dirs = [str(d if Path(d).is_absolute() else base / d) for d in cfg.workflows.dirs]
    if dirs != cfg.workflows.dirs:
        cfg.workflows.dirs = dirs
    bench = [
        b if b.startswith("@") or Path(b).is_absolute() else str(base / b)
        for b in cfg.infra.placement.bench
    ]
    if bench != cfg.infra.placement.bench:
        cfg.infra.placement.bench = bench
    catalog = cfg.infra.catalog_dir  # plan (CLI) and launch (serve, bot) must price from one catalog
    if catalog and not Path(catalog).expanduser().is_absolute():
        cfg.infra.catalog_dir = str(base / Path(catalog).expanduser())
    return cfg


def load_text(text: str, name: str = DEFAULT_NAME) -> NomadConfig:
    """Validate config given as text (tests, ``nomad init`` self-check)."""
    data, root = _parse(text, name)
    try:
        return NomadConfig.model_validate(data)
    except ValidationError as exc:
        raise _to_config_error(exc, Path(name), root) from None


def locate(path: str | os.PathLike[str] | None, loc: tuple[int | str, ...]) -> str:
    """``file:line`` of the key at ``loc`` (e.g. ``("batch", "jobs", 0, "workflow")``) in a config
    file, for checks that run after loading (batch jobs, workflows); ``environment`` without a file."""
    if path is None:
        return "environment"
    try:
        _, root = _read_yaml(Path(path))
    except ConfigError:
        return str(path)
    line = _line_of(root, loc)
    return f"{path}:{line}" if line else str(path)


def _read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", hint="run `nomad init` to write an example") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return _parse(text, str(path))


def _parse(text: str, name: str) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{name}{line}: invalid YAML: {exc.problem or exc.context}",
            hint="check indentation and quoting on that line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: invalid YAML: {exc}") from None
    if data is None:
        return {}, root
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1: the top level must be a mapping of sections (project:, registry:, …)")
    return data, root


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for var, (target, _doc) in ENV_VARS.items():
        value = environ.get(var)
        if not value or target is None:
            continue
        section, key = target.split(".", 1)
        sec = data.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ConfigError(f"{var} overrides {target}, but `{section}` in nomad.yaml is not a mapping")
        sec[key] = value
        if var == "NOMAD_PROXY":
            sec["enabled"] = True


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the deepest node along ``loc`` (the key itself where it exists)."""
    node = root
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line if line else (node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _to_config_error(exc: ValidationError, path: Path | None, root: yaml.Node | None) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p not in ("function-after",) and not str(p).startswith("function-"))
        key = ".".join(str(p) for p in loc) or "(top level)"
        where = str(path) if path else "environment"
        line = _line_of(root, loc)
        prefix = f"{where}:{line}" if line else where
        lines.append(f"{prefix}: {key}: {_explain(err)}")
    return ConfigError("\n".join(lines), hint="see docs/configuration.md or `nomad init` for an example")


def _explain(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key (typo?)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    got = err.get("input")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{msg}, got {type(got).__name__} {got!r}"[:300]
    return msg
