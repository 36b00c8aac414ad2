"""Parse a command message into a prompt and workflow options.

``/f an astronaut --seed 42 --ar 16:9`` ⇒ prompt "an astronaut", values
``{"seed": 42, "ar": "16:9"}``. Whether an option exists or is in range is
not decided here: the workflow's own bindings decide (``Workflow.bind``), so
a deployment's custom workflows get validation for free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nomad.errors import UsageError

_OPTION = re.compile(r"^--?([a-zA-Z][\w-]*)(?:=(.*))?$")
_DASHED = re.compile(
    r"^[\u2014\u2013\u2012\u2015\u2212]{1,2}(?=[a-zA-Z])"
)  # em/en dash, minus sign
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)$")

Value = str | int | float


@dataclass
class Parsed:
    """A command split into its parts."""

    command: str  # without the slash and without @botname
    prompt: str
    values: dict[str, Value] = field(default_factory=dict)


def parse_message(text: str) -> Parsed:
    """Split ``/cmd[@bot] words --opt value …`` into command, prompt and option values."""
    text = text.strip()
    if not text.startswith("/"):
        raise UsageError("a command starts with /, e.g. /f an astronaut")
    head, _, rest = text.partition(" ")
    command = head[1:].split("@", 1)[0].lower()
    prompt, values = parse_options(rest)
    return Parsed(command, prompt, values)


def parse_options(rest: str) -> tuple[str, dict[str, Value]]:
    """Take ``--name value`` / ``--name=value`` pairs out of free text; the rest is the prompt.

    Phones autocorrect ``--`` to an em dash (``—steps 2``) or an en dash
    (U+2013): a dash glued to an option-like word counts as ``--``.
    """
    words = [_DASHED.sub("--", w) for w in rest.split()]
    prompt: list[str] = []
    values: dict[str, Value] = {}
    i = 0
    while i < len(words):
        match = _OPTION.match(words[i]) if words[i].startswith("--") else None
        if match is None:
            prompt.append(words[i])
            i += 1
            continue
        name, inline = match.group(1).replace("-", "_").lower(), match.group(2)
        if inline is None:
            if i + 1 >= len(words) or words[i + 1].startswith("--"):
                raise UsageError(f"option --{name} needs a value, e.g. --{name} 42")
            inline, i = words[i + 1], i + 1
        if name in values:
            raise UsageError(f"option --{name} is given twice")
        values[name] = coerce(inline)
        i += 1
    return " ".join(prompt), values


def coerce(raw: str) -> Value:
    """``"42"`` ⇒ 42, ``"3.5"`` ⇒ 3.5, anything else stays text (``"16:9"``)."""
    if _INT.match(raw):
        return int(raw)
    if _FLOAT.match(raw):
        return float(raw)
    return raw
