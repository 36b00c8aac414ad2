"""``LocalBackend``: one ComfyUI per GPU on this machine, with the same dead-man's switch as a cloud node.

With a Docker engine (and the ``docker`` Python SDK) the pushed image runs
with GPUs; otherwise ``infra.local.command`` is started once per GPU with
``{port}`` and ``{gpu}`` substituted and ``CUDA_VISIBLE_DEVICES`` set.

Every cluster gets a supervisor process (:mod:`nomad.backends.local.supervisor`)
in its own session: it starts the servers (command mode), and stops them once
nobody has asked for them for the node window (``infra.idle_minutes`` +
``infra.node_idle_margin_minutes``), even when ``nomad serve`` was killed.
Ports are checked free and held per cluster under a lock, so two clusters
never share a port. Children get a scrubbed environment (no nomad secrets).

State lives in ``DATA_DIR/local/<cluster>/``: ``cluster.json`` (ports, argv,
window), ``supervisor.json`` (its pid and kernel start time, so a recycled pid
is never killed), ``pids.json`` (the servers, written by the supervisor),
``exits.json`` and the servers' logs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nomad import watchdog
from nomad.backends.base import Backend, ClusterInfo, ClusterState, Endpoint, LaunchSpec, Offer
from nomad.backends.local import docker_engine
from nomad.backends.local._files import (
    CLUSTER_FILE,
    EXITS_FILE,
    HS_FILE,
    PIDS_FILE,
    STOPPED_FILE,
    SUPERVISOR_FILE,
    write_json,
)
from nomad.backends.local.process import (
    same_process,
    spawn,
    start_ticks,
    stop_process,
    tail,
)
from nomad.config.schema import LocalBackendConfig, NodeConfig
from nomad.errors import BackendError, ConfigError
from nomad.osutil import port_free

if TYPE_CHECKING:
    from nomad.node import PullResult
    from nomad.privacy.node import NodeHiddenServices

SUPERVISOR_START_S = 15.0  # the supervisor records its servers' pids within this
PORT_SCAN = 200  # how far above the configured port to look for free ones


@dataclass(frozen=True)
class _Proc:
    pid: int
    start_ticks: int | None
    port: int
    gpu: int


class LocalBackend(Backend):
    """Runs ComfyUI servers on this machine (docker when present, else a command)."""

    name = "local"

    def __init__(
        self,
        cfg: LocalBackendConfig,
        data_dir: Path,
        *,
        idle_margin_minutes: float = watchdog.DEFAULT_MARGIN_MINUTES,
        startup_grace_s: float = 900.0,
        node: NodeConfig | None = None,
        registry_proxy: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.node = node  # node.weights: fetched ⇒ weights pulled into the node cache at launch
        self.registry_proxy = registry_proxy  # the weight pull's route (privacy.legs.registry)
        self.data_dir = Path(data_dir)
        self.idle_margin_minutes = idle_margin_minutes
        self.startup_grace_s = startup_grace_s  # the switch does not count start-up as idle

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

    def window_minutes(self, spec: LaunchSpec) -> float:
        """The supervisor's idle window: the autoscaler's plus the margin (see nomad.watchdog)."""
        return watchdog.node_window_minutes(spec.idle_minutes, self.idle_margin_minutes)

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Start N servers under a supervisor on free ports; endpoints known, health not yet."""
        mode = self.mode()
        if mode == "command" and not self.cfg.command:
            raise ConfigError(
                "infra.local.command is empty and no Docker engine is available",
                hint="set infra.local.command to the argv that starts one ComfyUI, e.g. "
                "[python, main.py, --listen, 127.0.0.1, --port, '{port}']",
            )
        fetched = self._fetch_weights(spec, mode)  # before any server starts; may take minutes
        count = max(self.cfg.gpus, 1)
        run_dir = self._dir(spec.cluster_name)
        with self._ports_lock():
            if self.status(spec.cluster_name).state is not ClusterState.GONE:
                raise BackendError(
                    f"local cluster {spec.cluster_name!r} is already running",
                    hint=f"run `nomad down {spec.cluster_name}` first",
                )
            shutil.rmtree(run_dir, ignore_errors=True)  # an earlier run's leftovers
            ports = self._free_ports(spec.comfy_port, count, spec.cluster_name)
            run_dir.mkdir(parents=True, exist_ok=True)
            urls = [f"http://{self.cfg.host}:{p}" for p in ports]
            window = self.window_minutes(spec)
            doc: dict[str, Any] = {
                "cluster": spec.cluster_name,
                "mode": mode,
                "ports": ports,
                "urls": urls,  # the supervisor's watchdog asks these (loopback)
                "window_minutes": window,
                "poll_seconds": watchdog.poll_seconds_for(window),
                "startup_grace_seconds": self.startup_grace_s,
                "servers": self._servers(spec, ports) if mode == "command" else [],
            }
            extra: dict[str, Any] = {"mode": mode, "node_window_minutes": window}
            if spec.hidden is not None:  # serve reaches them by address, through its proxy
                doc |= self._hidden_services(spec, ports, run_dir)
                urls = list(doc["endpoints"])
                extra["hidden_services"] = urls
            write_json(run_dir / CLUSTER_FILE, doc)
            if fetched is not None:
                extra["weights"] = "fetched"
            if mode == "docker":
                extra["containers"] = docker_engine.run(
                    spec, ports, **self._fetched_docker(fetched)
                )
            try:
                self._start_supervisor(spec.cluster_name)
            except BackendError:
                if mode == "docker":  # no switch would ever stop them: don't leave them running
                    docker_engine.remove(spec.cluster_name)
                raise
        if mode == "command":
            extra["pids"] = [p.pid for p in self._await_servers(spec.cluster_name)]
        moved = ports[0] != spec.comfy_port
        return ClusterInfo(
            name=spec.cluster_name,
            backend=self.name,
            state=ClusterState.PROVISIONING,
            endpoints=[Endpoint(url=u, gpu_index=i) for i, u in enumerate(urls)],
            offer=offer or self.plan(spec)[0],
            started_at=time.time(),
            price_per_hour=self.cfg.price_per_hour,
            detail=f"port {spec.comfy_port} is taken; using {ports[0]}" if moved else None,
            extra=extra,
        )

    def status(self, cluster_name: str) -> ClusterInfo:
        """UP while every server lives; FAILED when some died; PROVISIONING while starting; else GONE."""
        procs = self._read(cluster_name)
        if not procs and self.cfg.mode != "command" and self._mode_of(cluster_name) != "command":
            docker = self._docker_status(cluster_name)
            if docker.state is not ClusterState.GONE:
                return docker
        if not procs:
            if self._supervisor_alive(cluster_name):
                return self._info(cluster_name, ClusterState.PROVISIONING, [])
            return ClusterInfo(
                name=cluster_name,
                backend=self.name,
                state=ClusterState.GONE,
                detail=stopped_reason(self.data_dir, cluster_name),
            )
        info = self._info(cluster_name, ClusterState.UP, procs)
        dead = [p for p in procs if not same_process(p.pid, p.start_ticks)]
        if dead:
            info.state = ClusterState.FAILED
            log = self._dir(cluster_name) / f"comfy-{dead[0].gpu}.log"
            info.detail = f"{len(dead)} of {len(procs)} ComfyUI processes exited; see {log}"
        return info

    def startup_failure(self, cluster_name: str) -> str | None:
        """Why a cluster that is starting can no longer come up (a server or the supervisor
        exited, a container stopped), with the tail of its log; None while it still may."""
        procs = self._read(cluster_name)
        if not procs and self._mode_of(cluster_name) == "docker":
            return docker_engine.stopped_reason(cluster_name)
        if not procs:
            if self._supervisor_alive(cluster_name) or not self._dir(cluster_name).exists():
                return None
            log = self._dir(cluster_name) / "supervisor.log"
            return (
                f"the local supervisor of {cluster_name} exited; last lines of {log}:\n{tail(log)}"
            )
        exits = self._json(cluster_name, EXITS_FILE) or {}
        for p in procs:
            if same_process(p.pid, p.start_ticks):
                continue
            code = exits.get(str(p.gpu))
            if code is None and self._supervisor_alive(cluster_name):
                continue  # it records the exit code within a quarter second: ask again
            how = f"exited with code {code}" if code is not None else "exited"
            log = self._dir(cluster_name) / f"comfy-{p.gpu}.log"
            return (
                f"ComfyUI (gpu {p.gpu}, port {p.port}) {how} during start-up; "
                f"last lines of {log}:\n{tail(log)}"
            )
        return None

    def teardown(self, cluster_name: str) -> None:
        """Stop the supervisor and every server (group-wide), remove containers, forget it. Idempotent."""
        sup = self._json(cluster_name, SUPERVISOR_FILE)
        if sup and same_process(int(sup["pid"]), sup.get("start_ticks")):
            stop_process(int(sup["pid"]))
        for proc in self._read(cluster_name):
            if same_process(proc.pid, proc.start_ticks):
                stop_process(proc.pid)
        hs = self._json(cluster_name, HS_FILE)  # the hidden-service client, if the supervisor died
        if hs and same_process(int(hs["pid"]), hs.get("start_ticks")):
            stop_process(int(hs["pid"]))
        if self.cfg.mode != "command" and self._mode_of(cluster_name) != "command":
            docker_engine.remove(cluster_name)
        hidden = (self._json(cluster_name, CLUSTER_FILE) or {}).get("hidden_service") or {}
        if hidden.get("keys_root"):  # the next wake publishes under this cluster's address
            from nomad.privacy.keys import release

            release(Path(hidden["keys_root"]), cluster_name)
        shutil.rmtree(self._dir(cluster_name), ignore_errors=True)

    def _exists(self, cluster_name: str) -> bool:
        """Whether a cluster still runs here (a hidden-service slot of a gone one is free)."""
        return self.status(cluster_name).state is not ClusterState.GONE

    # -- ports -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _ports_lock(self) -> Iterator[None]:
        """One launch at a time on this data dir chooses ports (and checks the name is free)."""
        root = self.data_dir / "local"
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".ports.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def held_ports(self, *, other_than: str | None = None) -> dict[int, str]:
        """Ports held by live local clusters (port -> cluster), from their records."""
        held: dict[int, str] = {}
        root = self.data_dir / "local"
        for d in sorted(root.iterdir()) if root.is_dir() else []:
            if not d.is_dir() or d.name == other_than:
                continue
            doc = self._json(d.name, CLUSTER_FILE)
            if doc is None or self.status(d.name).state is ClusterState.GONE:
                continue
            held.update({int(p): d.name for p in doc.get("ports", [])})
        return held

    def _free_ports(self, base: int, count: int, cluster_name: str) -> list[int]:
        """``count`` ports from ``base`` up that no live cluster holds and nothing is bound to."""
        held = self.held_ports(other_than=cluster_name)
        ports: list[int] = []
        for port in range(base, min(base + PORT_SCAN, 65536)):
            if port not in held and port_free(self.cfg.host, port):
                ports.append(port)
                if len(ports) == count:
                    return ports
        raise BackendError(
            f"no {count} free port(s) for ComfyUI on {self.cfg.host} from {base} up",
            hint="stop what holds them (see `nomad status`) or set image.comfyui.port elsewhere",
        )

    # -- fetched weights (node.weights: fetched) ---------------------------------------

    def _fetch_weights(self, spec: LaunchSpec, mode: str) -> PullResult | None:
        """Pull the image's weights into the node cache (a ``weights_fetch`` phase in
        ``DATA_DIR/cold_start.jsonl``): command mode links them into ``infra.local.models_dir``,
        docker mode bind-mounts them into the slim ``node.base_image``. None when baked."""
        node = self.node
        if node is None or node.weights != "fetched":
            return None
        if not spec.image_ref:
            raise ConfigError(
                "node.weights is fetched but there is no pushed image to take the weights from",
                hint="run `nomad push` first, or set node.weights: baked",
            )
        if mode == "command" and not self.cfg.models_dir:
            raise ConfigError(
                "node.weights is fetched and the local backend runs a command, "
                "but infra.local.models_dir is not set",
                hint="set infra.local.models_dir to your ComfyUI's models folder",
            )
        if mode == "docker" and not node.base_image:
            raise ConfigError(
                "node.weights is fetched and the local backend runs docker, "
                "but node.base_image is not set",
                hint="run `nomad node slim REF` and set node.base_image to what it prints",
            )
        from nomad.node import PhaseRecorder, fetch_for_host
        from nomad.node.phases import jsonl

        limit = int(node.cache_max_gb * 1024**3) if node.cache_max_gb else None
        link = (
            Path(self.cfg.models_dir).expanduser()
            if mode == "command" and self.cfg.models_dir
            else None
        )
        return fetch_for_host(
            spec.image_ref, cache_dir=Path(node.cache_dir).expanduser(), cache_limit=limit,
            username=spec.registry_username, password=spec.registry_password, link_into=link,
            proxy=self.registry_proxy,
            recorder=PhaseRecorder(spec.cluster_name, jsonl(self.data_dir / "cold_start.jsonl")),
        )  # fmt: skip

    def _fetched_docker(self, fetched: PullResult | None) -> dict[str, Any]:
        """``docker_engine.run`` keywords for fetched weights: the slim image, read-only binds."""
        if fetched is None or self.node is None:
            return {}
        binds = {str(m.source): {"bind": m.target, "mode": "ro"} for m in fetched.mounts.mounts}
        return {"image": self.node.base_image, "volumes": binds}

    # -- hidden services (privacy.node) ---------------------------------------------------

    def _hidden_services(self, spec: LaunchSpec, ports: list[int], run_dir: Path) -> dict[str, Any]:
        """Keys installed into the cluster folder and the client's config; the supervisor
        starts (and restarts) the client. Endpoints become the services' addresses."""
        from nomad.privacy.node import install_keys, render_rc

        hidden = spec.hidden
        keys = hidden.keys(spec.cluster_name, len(ports), in_use=self._exists)
        base = run_dir / "hs"
        base.mkdir(mode=0o700)
        targets = []
        for i, (key, port) in enumerate(zip(keys, ports, strict=True)):
            install_keys(key, base / f"gpu{i}")
            targets.append((base / f"gpu{i}", port))
        rc = run_dir / "hs-client.rc"
        rc.write_text(render_rc(hidden, base, targets, log=run_dir / "hs-client.log"))
        binary = _client_binary(hidden)
        return {
            "hidden_service": {
                "argv": [binary, "-f", str(rc)],
                "client": hidden.client,
                "keys_root": hidden.keys_root,  # teardown gives the slot back
            },
            "endpoints": hidden.urls(spec.cluster_name, len(ports)),
        }

    # -- command mode ------------------------------------------------------------------

    def _servers(self, spec: LaunchSpec, ports: list[int]) -> list[dict[str, Any]]:
        return [
            {
                "gpu": gpu,
                "port": port,
                "argv": [_subst(a, port=port, gpu=gpu) for a in self.cfg.command],
                "env": {
                    **spec.envs,
                    "CUDA_VISIBLE_DEVICES": str(gpu),
                    "NOMAD_COMFY_PORT": str(port),
                },
            }
            for gpu, port in enumerate(ports)
        ]

    def _start_supervisor(self, cluster_name: str) -> None:
        run_dir = self._dir(cluster_name)
        argv = [sys.executable, "-m", "nomad.backends.local.supervisor", str(run_dir)]
        try:
            proc = spawn(argv, log_path=run_dir / "supervisor.log")
        except OSError as exc:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise BackendError(f"could not start the local supervisor: {exc}") from exc
        write_json(
            run_dir / SUPERVISOR_FILE, {"pid": proc.pid, "start_ticks": start_ticks(proc.pid)}
        )

    def _await_servers(self, cluster_name: str) -> list[_Proc]:
        """The servers' pids once the supervisor recorded them; a start that failed is torn down."""
        deadline = time.monotonic() + SUPERVISOR_START_S
        while time.monotonic() < deadline:  # bounded; the supervisor writes pids.json first thing
            procs = self._read(cluster_name)
            if procs:
                return procs
            if not self._supervisor_alive(cluster_name):
                break
            time.sleep(0.05)
        reason = self.startup_failure(cluster_name) or "it did not start its servers in time"
        self.teardown(cluster_name)
        raise BackendError(
            f"could not start infra.local.command {self.cfg.command[0]!r}: {reason}",
            hint="check the command path in infra.local.command",
        )

    # -- records -------------------------------------------------------------------------

    def _dir(self, cluster_name: str) -> Path:
        return self.data_dir / "local" / cluster_name

    def _json(self, cluster_name: str, name: str) -> Any:
        path = self._dir(cluster_name) / name
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise BackendError(
                f"{path} is unreadable: {exc}",
                hint=f"stop the processes by hand, then delete {path.parent}",
            ) from None

    def _mode_of(self, cluster_name: str) -> str | None:
        doc = self._json(cluster_name, CLUSTER_FILE)
        return str(doc["mode"]) if isinstance(doc, dict) and "mode" in doc else None

    def _supervisor_alive(self, cluster_name: str) -> bool:
        sup = self._json(cluster_name, SUPERVISOR_FILE)
        return bool(sup) and same_process(int(sup["pid"]), sup.get("start_ticks"))

    def _read(self, cluster_name: str) -> list[_Proc]:
        rows = self._json(cluster_name, PIDS_FILE)
        if rows is None:
            return []
        try:
            return [
                _Proc(int(r["pid"]), r.get("start_ticks"), int(r["port"]), int(r["gpu"]))
                for r in rows
            ]
        except (KeyError, TypeError, ValueError) as exc:
            path = self._dir(cluster_name) / PIDS_FILE
            raise BackendError(
                f"{path} is unreadable: {exc}",
                hint=f"stop the processes by hand, then delete {path}",
            ) from None

    def _info(self, cluster_name: str, state: ClusterState, procs: list[_Proc]) -> ClusterInfo:
        doc = self._json(cluster_name, CLUSTER_FILE) or {}
        urls = (
            doc.get("endpoints")
            or doc.get("urls")
            or [f"http://{self.cfg.host}:{p.port}" for p in procs]
        )
        return ClusterInfo(
            name=cluster_name,
            backend=self.name,
            state=state,
            endpoints=[Endpoint(url=u, gpu_index=i) for i, u in enumerate(urls)],
            price_per_hour=self.cfg.price_per_hour,
        )

    def _docker_status(self, cluster_name: str) -> ClusterInfo:
        """Docker mode keeps no pids: the containers (labelled with cluster, gpu, port) are the record."""
        rows = docker_engine.containers(cluster_name)
        if not rows:
            return ClusterInfo(name=cluster_name, backend=self.name, state=ClusterState.GONE)
        stopped = [gpu for gpu, _port, running in rows if not running]
        published = (self._json(cluster_name, CLUSTER_FILE) or {}).get("endpoints") or []
        return ClusterInfo(
            name=cluster_name,
            backend=self.name,
            state=ClusterState.FAILED if stopped else ClusterState.UP,
            endpoints=[  # privacy.node: the hidden services' addresses, not the loopback ports
                Endpoint(
                    url=published[gpu] if gpu < len(published) else f"http://{self.cfg.host}:{port}",
                    gpu_index=gpu,
                )
                for gpu, port, _running in rows
            ],
            price_per_hour=self.cfg.price_per_hour,
            detail=f"{len(stopped)} of {len(rows)} ComfyUI containers stopped "
            f"(docker logs nomad-{cluster_name}-{stopped[0]})"
            if stopped
            else None,
        )


def stopped_reason(data_dir: Path, cluster_name: str) -> str | None:
    """Why the supervisor stopped a cluster by itself (e.g. idle), if it did."""
    path = Path(data_dir) / "local" / cluster_name / STOPPED_FILE
    try:
        return str(json.loads(path.read_text()).get("reason"))
    except (OSError, ValueError, AttributeError):
        return None


def _client_binary(hidden: NodeHiddenServices) -> str:
    """The anon/tor this machine runs for its hidden services: shipped binary, path, or PATH."""
    from nomad.errors import PrivacyError

    if hidden.ship_binary:
        return str(hidden.ship_binary)
    found = shutil.which(hidden.binary)
    if not found:
        raise PrivacyError(
            f"privacy.node: the {hidden.client} client {hidden.binary!r} is not on this machine",
            hint="set privacy.node.binary to its path (or install it: apt-get install tor with "
            "privacy.node.client: tor), or privacy.node.publish: never to reach the servers on "
            "loopback through the proxy",
        )
    return found


def _subst(arg: str, *, port: int, gpu: int) -> str:
    return arg.replace("{port}", str(port)).replace("{gpu}", str(gpu))
