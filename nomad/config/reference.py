"""Render the configuration reference (docs/configuration.md) from the schema itself.

The schema is the single source of truth; this keeps the docs from drifting:
``tests/foundation/test_config_reference.py`` fails when the page is stale.
Regenerate with ``python -m nomad.config.reference > docs/configuration.md``.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nomad.config.env import ENV_VARS, SECRET_VARS
from nomad.config.schema import NomadConfig

HEADER = """# Configuration reference

nomad reads `nomad.yaml` (path: `--config`, `$NOMAD_CONFIG`, or `./nomad.yaml`).
Every section is optional; unknown keys are errors that name the file, line and
key. Relative paths are resolved against the folder holding `nomad.yaml`.
`nomad init` writes a commented example. This page is generated from the
schema (`python -m nomad.config.reference > docs/configuration.md`).

## Environment variables

Secrets and URLs are best given here rather than in the file. A variable
overrides the key shown; *secret* values are never printed or logged.

| variable | overrides | what |
| --- | --- | --- |
"""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(tp)[0])
    if origin in (list, dict):
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`" if value not in ({}, []) else "empty"
    return f"`{field.default!r}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        path = f"{prefix}{name}"
        inner = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if inner is None:
            for arg in typing.get_args(ann):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    inner = arg
        if inner is not None and typing.get_origin(ann) is not list:
            rows.extend(_rows(inner, f"{path}."))
            continue
        desc = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(ann)} | {_default(field)} | {desc} |")
    return rows


def render_reference() -> str:
    """The full markdown page."""
    out = [HEADER.rstrip("\n")]
    for var, (target, doc) in ENV_VARS.items():
        secret = " *(secret)*" if var in SECRET_VARS else ""
        out.append(f"| `{var}` | {f'`{target}`' if target else '—'} | {doc}{secret} |")
    out += ["", "## Keys", "", "| key | type | default | what |", "| --- | --- | --- | --- |"]
    out += _rows(NomadConfig, "")
    out += [
        "",
        "Model files (`models.<set>[]`), batch jobs (`batch.jobs[]`) and SSH hosts"
        " (`infra.ssh.hosts[]`, `infra.ssh_pools[].hosts[]`) are lists of:",
        "",
    ]
    from nomad.config.schema import BatchJob, ModelFile, SSHHost

    for title, model in (
        ("models.<set>[]", ModelFile),
        ("batch.jobs[]", BatchJob),
        ("infra.ssh.hosts[]", SSHHost),
    ):
        out += [f"### `{title}`", "", "| key | type | default | what |", "| --- | --- | --- | --- |"]
        out += _rows(model, "")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
