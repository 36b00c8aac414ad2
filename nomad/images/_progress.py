"""Rich progress bars for long byte-moving work (build, push), one bar per item plus a total."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Tick = Callable[[str, int, int | None], None]


@contextmanager
def byte_progress(title: str, *, enabled: bool = True) -> Iterator[Tick]:
    """Yield ``tick(name, bytes_done_now, total_or_None)``; draws bars on stderr when enabled."""
    if not enabled:
        yield lambda name, n, total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    cols: list[Any] = [
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    ]
    lock = threading.Lock()
    tasks: dict[str, Any] = {}
    with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
        overall = bar.add_task(title, total=None)

        def tick(name: str, n: int, total: int | None) -> None:
            with lock:
                if name not in tasks:
                    tasks[name] = bar.add_task(f"  {name[:60]}", total=total)
                bar.advance(tasks[name], n)
                bar.advance(overall, n)

        yield tick
