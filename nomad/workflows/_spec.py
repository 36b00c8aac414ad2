"""The binding file schema: named parameters → graph inputs, and model requirements.

A binding file (``NAME.yaml`` next to an API-format ``NAME.json``) is strict:
an unknown key is an error naming the key, so a typo never silently does
nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nomad.errors import WorkflowError

ParamType = Literal["str", "int", "float", "bool", "image", "aspect"]
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One named parameter: its type, default, bounds and the graph input(s) it sets.

    ``node``/``input`` is the primary target; ``also`` lists more (node, input)
    pairs set to the same value (e.g. one prompt feeding two text encoders).
    An ``aspect`` parameter sets the parameters named in ``sets`` (width, height)
    from a ratio such as ``16:9`` at the default pixel count.

    Values keep their JSON type end to end: an ``int`` parameter and its
    bounds are Python ints (arbitrary precision), never floats, so the seed
    range 0..18446744073709551615 is checked exactly.
    """

    type: ParamType
    node: str | None = None
    input: str | None = None
    also: list[tuple[str, str]] = Field(default_factory=list)
    default: Any = None
    # int first: YAML ints stay Python ints (a seed max of 2**64-1 must not become 2**64)
    min: int | float | None = None
    max: int | float | None = None
    choices: list[Any] | None = None
    sets: list[str] = Field(default_factory=list)
    help: str = ""

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.type == "aspect":
            if len(self.sets) != 2 or not self.choices:
                raise ValueError("an aspect parameter needs `sets: [width, height]` and `choices`")
        elif self.node is None or self.input is None:
            raise ValueError(f"a {self.type} parameter needs `node` and `input`")
        return self

    @property
    def targets(self) -> list[tuple[str, str]]:
        """Every (node id, input name) this parameter writes."""
        first = [(self.node, self.input)] if self.node and self.input else []
        return first + [(str(n), str(i)) for n, i in self.also]

    def coerce(self, raw: Any, *, name: str, workflow: str) -> Any:
        """Turn a CLI string (or a typed value) into this parameter's type, checking bounds."""
        value = self._typed(raw, name=name, workflow=workflow)
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise WorkflowError(
                f"{workflow}: {name}={raw!r} is not allowed (choose one of: {allowed})"
            )
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not _within(value, self.min, self.max)
        ):
            raise WorkflowError(
                f"{workflow}: {name}={raw} is out of range (allowed {_num(self.min)}..{_num(self.max)})",
                hint=f"see `nomad workflows show {workflow}`",
            )
        return value

    def _typed(self, raw: Any, *, name: str, workflow: str) -> Any:
        try:
            if self.type == "int":
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                if isinstance(raw, float) and abs(raw) >= 2**53:
                    raise ValueError  # a float this big has lost digits: ask for the exact int
                return int(raw) if not isinstance(raw, str) else int(raw.strip(), 10)
            if self.type == "float":
                if isinstance(raw, bool):
                    raise ValueError
                return float(raw)
            if self.type == "bool":
                return _bool(raw)
        except (TypeError, ValueError):
            raise WorkflowError(f"{workflow}: {name}={raw!r} is not a valid {self.type}") from None
        return str(raw)


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(text)


def _within(value: int | float, low: int | float | None, high: int | float | None) -> bool:
    """Exact comparison (int vs int never goes through a float)."""
    return (low is None or value >= low) and (high is None or value <= high)


def _num(v: int | float | None) -> str:
    if v is None:
        return "∞"
    if isinstance(v, int):
        return str(v)
    return str(int(v)) if v.is_integer() else str(v)


class ModelReq(_Strict):
    """A model file a workflow needs: where it goes under models/ and where it comes from."""

    folder: str
    file: str
    url: str | None = None
    sha256: str | None = None
    size: int | None = Field(None, ge=0)

    @field_validator("file")
    @classmethod
    def _plain(cls, v: str) -> str:
        if "/" in v or v in ("", ".", ".."):
            raise ValueError("file must be a plain file name")
        return v

    @property
    def dest(self) -> str:
        """Path under the ComfyUI models tree (the build's ``ModelFile.dest``)."""
        return f"{self.folder}/{self.file}"

    def as_model_file(self) -> dict[str, Any]:
        """The ``models:`` entry shape of nomad.yaml (``dest``, ``source``, ``sha256``, ``size``)."""
        return {"dest": self.dest, "source": self.url, "sha256": self.sha256, "size": self.size}


class BindingFile(_Strict):
    """The whole binding file."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    title: str = ""
    description: str = ""
    template: str | None = None
    graph: str | None = None
    output: Literal["image", "video"] = "image"
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    models: list[ModelReq] = Field(default_factory=list)
