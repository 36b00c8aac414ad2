"""Test doubles shipped to users so they can test their own automation.

Each is a *protocol double*, named as such: it speaks the real wire protocol
on loopback (or implements the real interface) but is not the real thing.

- ``FakeComfy`` (``nomad.testing.comfy``): a ComfyUI HTTP/WebSocket double.
- ``FakeBackend`` (``nomad.testing.backend``): a launch Backend that provisions nothing.
- ``BotApiStub`` (``nomad.testing.botapi``): a Telegram Bot API double (aiohttp).

Imported lazily so ``import nomad.testing`` costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FakeComfy": "nomad.testing.comfy",
    "FakeBackend": "nomad.testing.backend",
    "BotApiStub": "nomad.testing.botapi",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
