"""Key templates: which placeholders exist, rendering, and the "unique per run" rule.

A template that renders the same key for two runs makes the second run
overwrite the first (the documented ``wallpapers/{date}/…`` example lost the
morning's image to a manual run the same day), so templates must name the
run: ``{date}`` and ``{time}``, ``{slot}``, or ``{job}``. A fixed name for
"the newest one" is what the ``latest`` pointer is for.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import string
from typing import Any

from nomad.batch._schedule import as_utc

PLACEHOLDERS = {
    "name": "the batch job's name",
    "date": "slot date, YYYY-MM-DD (UTC)",
    "time": "slot time, HHMM (UTC)",
    "slot": "slot, YYYY-MM-DDTHHMMZ",
    "index": "output number (0, 1, …)",
    "ext": "output extension with the dot (.png)",
    "job": "queue job id",
}
LATEST_PLACEHOLDERS = {"name"}


def fields(template: str) -> list[str]:
    """Placeholder names used by ``template``; ValueError on malformed braces."""
    out = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} is not a plain name")
        if spec or conv:
            raise ValueError(f"placeholder {{{name}}} must not carry a format (':' or '!')")
        out.append(name)
    return out


def problems(template: str, allowed: set[str] | None = None, *, unique: bool = True) -> list[str]:
    """What is wrong with a key template (empty when fine)."""
    allowed = set(PLACEHOLDERS) if allowed is None else allowed
    try:
        used = fields(template)
    except ValueError as exc:
        return [str(exc)]
    out = [
        f"unknown placeholder {{{n}}} (known: {', '.join('{' + k + '}' for k in sorted(allowed))})"
        for n in used
        if n not in allowed
    ]
    if template.startswith("/") or ".." in template.split("/"):
        out.append("must be a relative key without '..'")
    names = set(used)
    if (
        unique
        and not out
        and not ({"slot"} & names or {"job"} & names or {"date", "time"} <= names)
    ):
        out.append(
            "is not unique per run: add {date} and {time}, {slot} or {job} "
            "(the latest_key pointer gives a fixed name)"
        )
    return out


def values(name: str, slot: dt.datetime, job_id: str, index: int | str, ext: str) -> dict[str, Any]:
    """Placeholder values for one output of one run."""
    s = as_utc(slot)
    return {
        "name": name,
        "date": s.strftime("%Y-%m-%d"),
        "time": s.strftime("%H%M"),
        "slot": s.strftime("%Y-%m-%dT%H%MZ"),
        "index": index,
        "ext": ext,
        "job": job_id,
    }


def render(template: str, vals: dict[str, Any]) -> str:
    """The key for ``vals`` (templates are validated at load, so this does not fail on them)."""
    return template.format(**vals)


def ext_of(key: str) -> str:
    """``.png`` for ``outputs/x/0.png``."""
    return posixpath.splitext(key)[1]


def manifest_key(output_template: str, manifest_template: str | None, vals: dict[str, Any]) -> str:
    """Where a run's manifest goes: next to its outputs unless configured."""
    if manifest_template:
        return render(manifest_template, {**vals, "index": "manifest", "ext": ".json"})
    if "index" in fields(output_template):
        return render(output_template, {**vals, "index": "manifest", "ext": ".json"})
    return render(output_template, {**vals, "ext": ".manifest.json"})
