"""The local backend's per-cluster supervisor: starts the servers, and stops them when idle.

On a cloud the node's own watchdog ends the job and SkyPilot's autostop
removes the node, so a GPU stops billing even when ``nomad serve`` was killed.
This is the same dead-man's switch for the ``local`` backend: one small
process per cluster, in its own session (it outlives the ``nomad`` that
started it), which

- starts one ComfyUI per GPU (command mode) as its children, in its process
  group, each with a parent-death signal, so stopping the supervisor's group
  stops every server and a killed supervisor takes its servers with it;
- records their pids (``pids.json``) and, when one exits, its exit code
  (``exits.json``), so ``status`` and the start-up watch can say why;
- polls every endpoint with :mod:`nomad.watchdog` and, once all have been idle
  for the node window (``infra.idle_minutes`` + margin), stops the servers
  (command mode) or removes the containers (docker mode), forgets the
  cluster's record and exits.

Run as ``python -m nomad.backends.local.supervisor CLUSTER_DIR``; everything
else comes from ``CLUSTER_DIR/cluster.json`` written by :class:`LocalBackend`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nomad import watchdog
from nomad.backends.local._files import (
    CLUSTER_FILE,
    EXITS_FILE,
    HS_FILE,
    PIDS_FILE,
    STOPPED_FILE,
    write_json,
)
from nomad.backends.local.process import spawn, start_ticks, stop_process


class Supervisor:
    """One cluster's servers and their idle switch."""

    def __init__(self, cluster_dir: Path, doc: dict[str, Any]) -> None:
        self.dir = cluster_dir
        self.doc = doc
        self.procs: dict[int, subprocess.Popen[bytes]] = {}  # gpu -> server
        self.exits: dict[str, int] = {}
        self.stopping = False
        self.hs: subprocess.Popen[bytes] | None = None  # the hidden-service client (privacy.node)
        self.hs_restarts = 0

    def start_hidden_service(self) -> None:
        """Start the anon/tor that publishes the servers (privacy.node), if the cluster has one.

        It is our child like the servers: it dies with us, and it is restarted when it exits
        (:meth:`reap`), so a crashed client costs reachability for seconds, not the cluster."""
        hs = self.doc.get("hidden_service")
        if not hs:
            return
        self.hs = spawn(
            list(hs["argv"]),
            env={},
            log_path=self.dir / "hs-client.out",
            new_session=False,
            die_with_parent=True,
        )
        write_json(
            self.dir / HS_FILE,
            {"pid": self.hs.pid, "start_ticks": start_ticks(self.hs.pid),
             "restarts": self.hs_restarts, "endpoints": self.doc.get("endpoints", [])},
        )  # fmt: skip

    def start(self) -> None:
        """Start every server of a command-mode cluster and record their pids."""
        self.start_hidden_service()
        rows = []
        for srv in self.doc.get("servers", []):
            proc = spawn(
                list(srv["argv"]),
                env=dict(srv.get("env") or {}),
                log_path=self.dir / f"comfy-{srv['gpu']}.log",
                new_session=False,  # our group: stopping the supervisor's group stops them
                die_with_parent=True,  # and a killed supervisor takes them along
            )
            self.procs[int(srv["gpu"])] = proc
            rows.append(
                {
                    "pid": proc.pid,
                    "start_ticks": start_ticks(proc.pid),
                    "port": srv["port"],
                    "gpu": srv["gpu"],
                }
            )
        write_json(self.dir / PIDS_FILE, rows)

    def reap(self) -> bool:
        """Record servers that exited; True while at least one server (or container) may run.
        A hidden-service client that exited is started again."""
        if self.hs is not None and self.hs.poll() is not None and not self.stopping:
            self.hs_restarts += 1
            self.start_hidden_service()
        for gpu, proc in self.procs.items():
            code = proc.poll()
            if code is not None and str(gpu) not in self.exits:
                self.exits[str(gpu)] = code
                write_json(self.dir / EXITS_FILE, self.exits)
        return not self.procs or len(self.exits) < len(self.procs)

    def run(self) -> str:
        """Poll until idle for the window, every server exited, or a stop signal; returns why."""
        window = float(self.doc["window_minutes"])
        poll = float(self.doc.get("poll_seconds") or watchdog.poll_seconds_for(window))
        urls = list(self.doc["urls"])
        started = time.monotonic()
        grace = float(self.doc.get("startup_grace_seconds") or 0.0)
        policy = watchdog.IdlePolicy(idle_seconds=window * 60.0, started_at=started)
        answered = False
        while not self.stopping:
            if not self.reap():
                return "every server exited"
            obs = {u: watchdog.observe(u) for u in urls}
            now = time.monotonic()
            answered = answered or all(o.busy is not None for o in obs.values())
            if not answered and now - started < grace:
                policy.last_activity = now  # still starting (pulling, loading): not idle yet
            if policy.observe(now, obs):
                return f"idle for {window:g} min (nobody asked for these servers)"
            _sleep(poll, self)
        return "asked to stop"

    def stop(self) -> None:
        """Stop the servers (bounded), or remove the cluster's containers in docker mode."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs.values():
            stop_process(proc)
        if self.hs is not None:
            stop_process(self.hs)
        if self.doc.get("mode") == "docker":
            from nomad.backends.local import docker_engine

            docker_engine.remove(str(self.doc["cluster"]))
        self.reap()


def _sleep(seconds: float, sup: Supervisor) -> None:
    """Sleep in short steps: a stop signal is acted on, and a server's exit code recorded
    (the start-up watch reads it), within a quarter second."""
    end = time.monotonic() + seconds
    while not sup.stopping and time.monotonic() < end and sup.reap():
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nomad.backends.local.supervisor CLUSTER_DIR", file=sys.stderr)
        return 2
    cluster_dir = Path(args[0])
    doc = json.loads((cluster_dir / CLUSTER_FILE).read_text())
    sup = Supervisor(cluster_dir, doc)

    def on_signal(_sig: int, _frame: Any) -> None:
        sup.stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sup.start()
    why = sup.run()
    print(f"nomad supervisor: {why}; stopping {doc['cluster']}", flush=True)
    sup.stop()
    with contextlib.suppress(OSError):  # `nomad down` may be removing the folder right now
        write_json(
            cluster_dir / STOPPED_FILE, {"reason": why, "at": time.time(), "exits": sup.exits}
        )
        if why.startswith("idle"):  # gone on purpose: nothing left to report or hold
            for name in (PIDS_FILE, CLUSTER_FILE):
                (cluster_dir / name).unlink(missing_ok=True)
    # anything the servers spawned is still in our process group: stop it too
    if os.getpgid(0) == os.getpid():  # only when we lead our own group (as LocalBackend starts us)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.killpg(os.getpid(), signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
