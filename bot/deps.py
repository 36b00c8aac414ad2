"""What the bot needs from the rest of nomad, as small injectable seams.

The bot only enqueues and reports. It reads the queue, reads/writes S3
objects (input photos, results) and reads workflow bindings; admins may
launch or tear down a cluster. Each is a Protocol so the CLI passes the real
pieces and tests pass real local ones (SQLite queue, embedded S3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nomad.config.schema import BotConfig
from nomad.queue.base import JobQueue


class StorageLike(Protocol):
    """The part of :class:`nomad.storage.Storage` the bot uses."""

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...


class WorkflowLike(Protocol):
    """The part of ``nomad.workflows.Workflow`` the bot uses."""

    params: dict[str, Any]
    output_kind: str

    def bind(self, values: dict[str, Any], images: dict[str, bytes] | None = None) -> Any: ...


class AdminOps(Protocol):
    """Cluster control for /up and /down (wired to nomad.launch when available)."""

    def up(self) -> str: ...

    def down(self) -> str: ...


@dataclass
class BotDeps:
    """Everything the handlers and the job tracker use; built once per process."""

    config: BotConfig
    queue: JobQueue
    storage: StorageLike
    load_workflow: Callable[[str], WorkflowLike]
    admin: AdminOps | None = None
    poll_interval: float = 2.0  # seconds between queue reads per tracked job
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests pass a virtual clock's
    edit_interval: float = 5.0  # seconds between two edits of one status message (≥ 5 s)
    input_prefix: str = "inputs/telegram/"
    extra: dict[str, Any] = field(default_factory=dict)

    def workflow_for(self, command: str) -> str | None:
        """The workflow a command maps to (cfg.bot.commands), or None."""
        return self.config.commands.get(command.lower())

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.config.admins

    def is_allowed(self, user_id: int) -> bool:
        """Allowlisted users and admins may spend GPU time (empty allowlist: admins only)."""
        return user_id in self.config.allowlist or self.is_admin(user_id)
