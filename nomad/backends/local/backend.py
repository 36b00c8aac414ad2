"""``LocalBackend``: one ComfyUI per GPU on this machine, stoppable by pid.

With a Docker engine (and the ``docker`` Python SDK) the pushed image runs
with GPUs; otherwise ``infra.local.command`` is started once per GPU with
``{port}`` and ``{gpu}`` substituted and ``CUDA_VISIBLE_DEVICES`` set. Pids
(with their kernel start times, so a recycled pid is never killed) are kept in
``DATA_DIR/local/<cluster>/pids.json`` so any later process can stop them.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomad.backends.base import Backend, ClusterInfo, ClusterState, Endpoint, LaunchSpec, Offer
from nomad.backends.local import docker_engine
from nomad.backends.local.process import pid_alive, spawn, stop_process
from nomad.config.schema import LocalBackendConfig
from nomad.errors import BackendError, ConfigError


@dataclass(frozen=True)
class _Proc:
    pid: int
    start_ticks: int | None
    port: int
    gpu: int


class LocalBackend(Backend):
    """Runs ComfyUI servers on this machine (docker when present, else a command)."""

    name = "local"

    def __init__(self, cfg: LocalBackendConfig, data_dir: Path) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """The one offer this box makes: its GPUs at the configured $/hour."""
        return [
            Offer(
                cloud="local",
                region=self.cfg.host,
                instance_type=self.mode(),
                gpu=self.cfg.gpu_name,
                gpu_count=max(self.cfg.gpus, 1),
                price_per_hour=self.cfg.price_per_hour,
                spot=False,
            )
        ]

    def mode(self) -> str:
        """``docker`` or ``command``: what ``auto`` resolves to on this machine."""
        if self.cfg.mode == "command":
            return "command"
        if self.cfg.mode == "docker" or docker_engine.available():
            return "docker"
        return "command"

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Start N servers on ports ``spec.comfy_port + i``; endpoints known, health not yet."""
        if self.status(spec.cluster_name).state not in (ClusterState.GONE,):
            raise BackendError(
                f"local cluster {spec.cluster_name!r} is already running",
                hint=f"run `nomad down {spec.cluster_name}` first",
            )
        count = max(self.cfg.gpus, 1)
        ports = [spec.comfy_port + i for i in range(count)]
        if self.mode() == "docker":
            extra: dict[str, Any] = {"containers": docker_engine.run(spec, ports)}
        else:
            extra = {"pids": [p.pid for p in self._start_commands(spec, ports)]}
        return ClusterInfo(
            name=spec.cluster_name,
            backend=self.name,
            state=ClusterState.PROVISIONING,
            endpoints=[
                Endpoint(url=f"http://{self.cfg.host}:{p}", gpu_index=i)
                for i, p in enumerate(ports)
            ],
            offer=offer or self.plan(spec)[0],
            started_at=time.time(),
            price_per_hour=self.cfg.price_per_hour,
            extra={"mode": self.mode(), **extra},
        )

    def status(self, cluster_name: str) -> ClusterInfo:
        """UP while every recorded process lives; FAILED when some died; GONE when none recorded."""
        procs = self._read(cluster_name)
        if not procs and self.cfg.mode != "command":
            return self._docker_status(cluster_name)
        if not procs:
            return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)
        dead = [p for p in procs if not _same_process(p)]
        endpoints = [
            Endpoint(url=f"http://{self.cfg.host}:{p.port}", gpu_index=p.gpu) for p in procs
        ]
        info = ClusterInfo(
            name=cluster_name,
            backend=self.name,
            state=ClusterState.UP,
            endpoints=endpoints,
            price_per_hour=self.cfg.price_per_hour,
        )
        if dead:
            info.state = ClusterState.FAILED
            log = self._dir(cluster_name) / f"comfy-{dead[0].gpu}.log"
            info.detail = f"{len(dead)} of {len(procs)} ComfyUI processes exited; see {log}"
        return info

    def _docker_status(self, cluster_name: str) -> ClusterInfo:
        """Docker mode keeps no pids: the containers (labelled with cluster, gpu, port) are the record."""
        rows = docker_engine.containers(cluster_name)
        if not rows:
            return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)
        stopped = [gpu for gpu, _port, running in rows if not running]
        return ClusterInfo(
            name=cluster_name,
            backend=self.name,
            state=ClusterState.FAILED if stopped else ClusterState.UP,
            endpoints=[
                Endpoint(url=f"http://{self.cfg.host}:{port}", gpu_index=gpu)
                for gpu, port, _running in rows
            ],
            price_per_hour=self.cfg.price_per_hour,
            detail=f"{len(stopped)} of {len(rows)} ComfyUI containers stopped "
            f"(docker logs nomad-{cluster_name}-{stopped[0]})"
            if stopped
            else None,
        )

    def teardown(self, cluster_name: str) -> None:
        """Stop every process of the cluster (group-wide) and forget it. Idempotent."""
        for proc in self._read(cluster_name):
            if _same_process(proc):
                stop_process(proc.pid)
        if self.cfg.mode != "command":
            docker_engine.remove(cluster_name)
        shutil.rmtree(self._dir(cluster_name), ignore_errors=True)

    # -- command mode ------------------------------------------------------------------

    def _start_commands(self, spec: LaunchSpec, ports: list[int]) -> list[_Proc]:
        if not self.cfg.command:
            raise ConfigError(
                "infra.local.command is empty and no Docker engine is available",
                hint="set infra.local.command to the argv that starts one ComfyUI, e.g. "
                "[python, main.py, --listen, 127.0.0.1, --port, '{port}']",
            )
        run_dir = self._dir(spec.cluster_name)
        run_dir.mkdir(parents=True, exist_ok=True)
        started: list[_Proc] = []
        try:
            for gpu, port in enumerate(ports):
                argv = [_subst(a, port=port, gpu=gpu) for a in self.cfg.command]
                env = {**spec.envs, "CUDA_VISIBLE_DEVICES": str(gpu), "NOMAD_COMFY_PORT": str(port)}
                proc = spawn(argv, env=env, log_path=run_dir / f"comfy-{gpu}.log")
                started.append(_Proc(proc.pid, _start_ticks(proc.pid), port, gpu))
                self._write(spec.cluster_name, started)
        except OSError as exc:
            for p in started:
                stop_process(p.pid)
            shutil.rmtree(run_dir, ignore_errors=True)
            raise BackendError(
                f"could not start infra.local.command {self.cfg.command[0]!r}: "
                f"{exc.strerror or exc}",
                hint="check the command path in infra.local.command",
            ) from exc
        return started

    def _dir(self, cluster_name: str) -> Path:
        return self.data_dir / "local" / cluster_name

    def _write(self, cluster_name: str, procs: list[_Proc]) -> None:
        rows = [
            {"pid": p.pid, "start_ticks": p.start_ticks, "port": p.port, "gpu": p.gpu}
            for p in procs
        ]
        path = self._dir(cluster_name) / "pids.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(path)

    def _read(self, cluster_name: str) -> list[_Proc]:
        path = self._dir(cluster_name) / "pids.json"
        if not path.exists():
            return []
        try:
            rows = json.loads(path.read_text())
            return [
                _Proc(int(r["pid"]), r.get("start_ticks"), int(r["port"]), int(r["gpu"]))
                for r in rows
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"{path} is unreadable: {exc}",
                hint=f"stop the processes by hand, then delete {path}",
            ) from None


def _subst(arg: str, *, port: int, gpu: int) -> str:
    return arg.replace("{port}", str(port)).replace("{gpu}", str(gpu))


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks (field 22 of /proc/PID/stat); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])


def _same_process(proc: _Proc) -> bool:
    """Alive and not a recycled pid (same start time as when we spawned it)."""
    if not pid_alive(proc.pid):
        return False
    return proc.start_ticks is None or _start_ticks(proc.pid) == proc.start_ticks
