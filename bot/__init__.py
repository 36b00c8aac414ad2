"""nomad's Telegram front door: the only package that imports ``telegram``.

It enqueues jobs on nomad's queue and reports on them; it never talks to
ComfyUI or a cloud. Public API: :func:`build_application`, :class:`BotDeps`.
Both are imported lazily so ``import nomad_bot`` does not load telegram.
Installed as ``nomad_bot`` (see setup.py): a top-level ``bot`` would collide.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_application": "nomad_bot.app",
    "BotRuntime": "nomad_bot.app",
    "BotDeps": "nomad_bot.deps",
    "run_bot": "nomad_bot.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
