"""Structured logs for ``nomad serve``: one ``event key=value …`` line per thing that happened.

logfmt keeps lines greppable by humans and parseable by log shippers;
values are quoted when they contain spaces. Never pass secrets here.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("nomad.serve")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return '"' + text.replace('"', '\\"') + '"'
    return text


def event(name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``name k=v …`` (fields with None values are left out)."""
    if log.isEnabledFor(level):
        parts = [name, *(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)]
        log.log(level, " ".join(parts))
