"""The on-node dead-man's switch: exit when ComfyUI has been idle for N minutes.

SkyPilot's autostop only sees SkyPilot jobs, and a ComfyUI server job never
looks idle, so a node whose controller died would run (and bill) forever.
This watchdog runs next to the servers inside the job (see
``sky/comfyui.yaml``): it polls every ComfyUI's ``/queue``, ``/prompt``
(``exec_info.queue_remaining``) and the newest ``/history`` entry; once all
have been empty, unchanged (or unreachable) for ``--idle-minutes`` it exits 0.
The run script then stops the servers, the job ends, and SkyPilot's
``autostop {down: true}`` tears the node down — with nobody left to ask.

Standard library only, so it runs on any image with a Python 3 (copy this one
file in, or ``python3 -m nomad.watchdog`` where nomad is installed)::

    python3 -m nomad.watchdog --url http://127.0.0.1:8188 --idle-minutes 10

The policy (:class:`IdlePolicy`) is pure and takes the time as an argument, so
it is tested with an injected clock and never sleeps.

The switch only catches what the autoscaler can no longer do (``nomad serve``
gone), so its window must be longer than the autoscaler's idle window: every
backend arms it with :func:`node_window_minutes` (``infra.idle_minutes`` plus
``infra.node_idle_margin_minutes``), never with ``idle_minutes`` alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POLL_SECONDS = 15.0
HTTP_TIMEOUT_S = 5.0
DEFAULT_MARGIN_MINUTES = 3.0  # node window = autoscaler idle window + this


def node_window_minutes(
    idle_minutes: float, margin_minutes: float = DEFAULT_MARGIN_MINUTES
) -> float:
    """The dead-man's switch window for a node whose controller idles it down after ``idle_minutes``.

    Strictly longer than the autoscaler's window, by ``margin_minutes``, so the
    node never stops first while ``nomad serve`` is alive: the autoscaler
    decides idleness and tears down; the node only acts when nobody else can.
    """
    if idle_minutes <= 0 or margin_minutes <= 0:
        raise ValueError("idle_minutes and margin_minutes must both be > 0")
    return float(idle_minutes) + float(margin_minutes)


def poll_seconds_for(window_minutes: float) -> float:
    """How often to poll for a window: every 15 s, or 8 times per window for short ones (≥ 0.5 s)."""
    return max(0.5, min(POLL_SECONDS, window_minutes * 60.0 / 8.0))


@dataclass(frozen=True)
class Observation:
    """One poll of one ComfyUI: busy, idle, or unreachable (None), plus the newest history key."""

    busy: bool | None
    last_prompt: str | None = None


@dataclass
class IdlePolicy:
    """Decides when the node has been idle long enough. Pure: time is passed in."""

    idle_seconds: float
    started_at: float
    last_activity: float = field(init=False)
    _seen: dict[str, str | None] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.last_activity = self.started_at

    def observe(self, now: float, observations: dict[str, Observation]) -> bool:
        """Record one poll of every endpoint; True when the node should shut down."""
        if any(o.busy for o in observations.values()) or self._new_prompts(observations):
            self.last_activity = now
        return now - self.last_activity >= self.idle_seconds

    def idle_for(self, now: float) -> float:
        """Seconds since the last sign of work."""
        return now - self.last_activity

    def _new_prompts(self, observations: dict[str, Observation]) -> bool:
        """A prompt that started and finished between two polls still counts as work."""
        changed = False
        for url, obs in observations.items():
            if obs.busy is None:
                continue
            if url in self._seen and obs.last_prompt != self._seen[url]:
                changed = True
            self._seen[url] = obs.last_prompt
        return changed


Fetch = Callable[[str], Any]


def fetch_json(url: str) -> Any:
    """GET ``url`` and parse JSON (loopback only; no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=HTTP_TIMEOUT_S) as resp:
        return json.loads(resp.read().decode("utf-8"))


def observe(base_url: str, fetch: Fetch = fetch_json) -> Observation:
    """Poll one ComfyUI; unreachable or garbled answers read as ``busy=None``."""
    base = base_url.rstrip("/")
    try:
        queue = fetch(base + "/queue")
        prompt = fetch(base + "/prompt")
        history = fetch(base + "/history?max_items=1")
        remaining = int(((prompt or {}).get("exec_info") or {}).get("queue_remaining") or 0)
        busy = bool(queue.get("queue_running") or queue.get("queue_pending") or remaining > 0)
        last = max(history, default=None) if isinstance(history, dict) else None
    except Exception:
        # a cut-off reply (http.client.IncompleteRead) or odd JSON must not crash the
        # switch: that would end the job and tear a busy node down
        return Observation(busy=None)
    return Observation(busy=busy, last_prompt=last)


def run(
    urls: list[str],
    idle_minutes: float,
    *,
    poll_s: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    fetch: Fetch = fetch_json,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
    max_polls: int | None = None,
) -> bool:
    """Poll until idle for ``idle_minutes``; True when it exited for idleness."""
    policy = IdlePolicy(idle_seconds=idle_minutes * 60.0, started_at=clock())
    polls = 0
    while max_polls is None or polls < max_polls:
        polls += 1
        obs = {u: observe(u, fetch) for u in urls}
        if policy.observe(clock(), obs):
            log(
                f"nomad watchdog: idle for {policy.idle_for(clock()) / 60:.1f} min on {len(urls)} endpoint(s)"
            )
            return True
        sleep(poll_s)
    return False


def _kill_group() -> None:
    """Stop this process group (ComfyUI servers started by the same job script)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgid(0), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m nomad.watchdog", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--url", action="append", required=True, help="ComfyUI base URL (repeat per GPU)"
    )
    p.add_argument("--idle-minutes", type=float, required=True)
    p.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)
    p.add_argument(
        "--kill-group", action="store_true", help="on idle, SIGTERM this process group too"
    )
    args = p.parse_args(argv)
    if args.idle_minutes <= 0:
        p.error("--idle-minutes must be > 0")
    run(args.url, args.idle_minutes, poll_s=args.poll_seconds)
    if args.kill_group:
        _kill_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
