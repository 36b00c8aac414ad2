"""``nomad doctor``: one line per capability nomad needs, each OK / WARN / FAIL with the fix.

Checks run concurrently and every probe is bounded (subprocess timeouts,
3 s network timeouts), so doctor stays quick even when things are down.
Only required capabilities can FAIL; optional ones WARN. Vendor SDKs are
never imported here: SkyPilot and psycopg are probed in a child Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from nomad.config.schema import NomadConfig
from nomad.errors import NomadError

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """The verdict on one capability; ``fix`` says what to do when it is not ok."""

    name: str
    level: Level
    detail: str
    fix: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Report:
    """All checks; ``ok`` is false when any check failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.level != "fail" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def run_doctor(cfg: NomadConfig, data_dir: Path) -> Report:
    """Run every check (in parallel threads) against ``cfg``."""
    checks: list[Check] = []
    probes: list[Callable[[], Check | list[Check]]] = [
        lambda: _weed(cfg),
        lambda: _registry_bin(cfg),
        lambda: _binary("skopeo", "apt-get install skopeo", "image checks, pulls"),
        lambda: _binary("umoci", "apt-get install umoci", "unpacking images in tests"),
        _docker,
        lambda: _skypilot(cfg),
        lambda: _s3(cfg, data_dir),
        lambda: _registry(cfg, data_dir),
        lambda: _database(cfg, data_dir),
        lambda: _privacy(cfg, data_dir),
        lambda: _privacy_legs(cfg),
        lambda: command_on_path(os.environ.get("PATH", ""), this_command()),
        _catalog,
    ]
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        for result in pool.map(_safe, probes):
            checks.extend(result if isinstance(result, list) else [result])
    return Report(tuple(checks))


def _safe(probe: Callable[[], Check | list[Check]]) -> Check | list[Check]:
    try:
        return probe()
    except Exception as exc:  # a broken probe must not hide the other lines
        return Check("doctor", "fail", f"a check crashed: {type(exc).__name__}: {exc}", None, True)


def _run(
    argv: list[str], timeout: float = 5.0, env: dict[str, str] | None = None
) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    except OSError as exc:
        return 127, str(exc)
    out = (proc.stdout or proc.stderr).strip().splitlines()
    return proc.returncode, out[0] if out else ""


def _binary(name: str, fix: str, why: str, required: bool = False) -> Check:
    path = shutil.which(name)
    if path:
        return Check(name, "ok", path)
    return Check(
        name, "fail" if required else "warn", f"not found (needed for {why})", fix, required
    )


def _weed(cfg: NomadConfig) -> Check:
    from nomad.dev.stack import find_weed

    required = not cfg.storage.endpoint_url
    try:
        path = find_weed()
    except NomadError as exc:
        why = "the embedded S3 (storage.endpoint_url is empty)" if required else "`nomad dev`"
        return Check("weed", "fail" if required else "warn", f"not found (needed for {why})",
                     exc.hint, required)  # fmt: skip
    code, out = _run([path, "version"])
    return Check("weed", "ok" if code == 0 else "warn", f"{path} ({out})", None, required)


def _registry_bin(cfg: NomadConfig) -> Check:
    from nomad.dev.stack import find_registry

    required = not cfg.registry.url
    try:
        return Check("docker-registry", "ok", find_registry(), None, required)
    except NomadError as exc:
        why = "the embedded registry (registry.url is empty)" if required else "`nomad dev`"
        return Check("docker-registry", "fail" if required else "warn",
                     f"not found (needed for {why})", exc.hint, required)  # fmt: skip


def _docker() -> list[Check]:
    path = shutil.which("docker")
    if not path:
        fix = "optional: install docker only to use the Dockerfile export or local docker mode"
        return [Check("docker", "warn", "no docker client (nomad builds images itself)", fix)]
    checks = [Check("docker", "ok", f"{path} ({_run([path, '--version'])[1]})")]
    code, out = _run([path, "buildx", "version"])
    checks.append(
        Check("docker buildx", "ok", out)
        if code == 0
        else Check(
            "docker buildx",
            "warn",
            "missing (only the Dockerfile export needs it)",
            "install the docker-buildx plugin",
        )
    )
    code, out = _run([path, "info", "--format", "{{.ServerVersion}}"], timeout=8)
    checks.append(
        Check("docker engine", "ok", f"server {out}")
        if code == 0
        else Check(
            "docker engine",
            "warn",
            "no engine reachable (local docker mode unavailable)",
            "start dockerd, or use infra.local.mode: command",
        )
    )
    return checks


_SKY_PROBE = """
import json
from sky import clouds, global_user_state, skypilot_config
ws = skypilot_config.get_active_workspace()
cap = clouds.CloudCapability.COMPUTE
print(json.dumps([str(c) for c in global_user_state.get_cached_enabled_clouds(cap, ws)]))
"""


def _skypilot(cfg: NomadConfig) -> list[Check]:
    from nomad.backends.skypilot._import import INSTALL_HINT, sky_available

    needed = cfg.infra.backend in ("skypilot", "ssh") or (
        cfg.infra.backend == "fleet" and any(m != "local" for m in cfg.infra.fleet)
    )
    if not sky_available():
        level: Level = "fail" if needed else "warn"
        why = f"infra.backend is {cfg.infra.backend}"
        return [Check("skypilot", level, f"not installed ({why})", INSTALL_HINT, needed)]
    code, out = _run([sys.executable, "-c", _SKY_PROBE], timeout=45)
    if code != 0:
        return [Check("skypilot", "warn", f"installed, but probing it failed: {out}",
                      "run `sky check` to see why")]  # fmt: skip
    try:
        clouds = json.loads(out)
    except ValueError:
        clouds = []
    installed = Check("skypilot", "ok", "installed", None, needed)
    if clouds:
        return [installed, Check("clouds", "ok", "enabled: " + ", ".join(clouds))]
    return [installed, Check("clouds", "warn", "no cloud enabled (plans still work offline)",
                             "add credentials, then `sky check`")]  # fmt: skip


def _s3(cfg: NomadConfig, data_dir: Path) -> Check:
    from nomad.dev.defaults import resolve_storage
    from nomad.storage import Storage

    try:
        settings = resolve_storage(cfg, data_dir)
        Storage(settings, connect_timeout=3, attempts=1).check()
    except NomadError as exc:
        return Check("s3", "fail", exc.message, exc.hint, True)
    where = f"{settings.endpoint_url or 'AWS'} bucket {settings.bucket}"
    return Check("s3", "ok", where, None, True)


def _registry(cfg: NomadConfig, data_dir: Path) -> Check:
    import httpx

    from nomad.dev.defaults import resolve_registry

    try:
        reg = resolve_registry(cfg, data_dir)
    except NomadError as exc:
        return Check("registry", "fail", exc.message, exc.hint, True)
    from nomad import privacy

    loopback = reg.url.startswith(("http://127.", "http://localhost"))
    route = privacy.sync_client_kwargs(reg.proxy, 3.0)  # the registry leg's route, never env
    try:
        with httpx.Client(timeout=3, verify=not reg.insecure, **route) as client:
            status = client.get(f"{reg.url}/v2/").status_code
    except httpx.HTTPError as exc:
        fix = "start it with `nomad dev up`" if loopback else "check registry.url and the network"
        return Check(
            "registry", "fail", f"{reg.url} not reachable ({type(exc).__name__})", fix, True
        )
    if status == 200 or (status == 401 and reg.username):
        return Check("registry", "ok", f"{reg.url} (GET /v2/ → {status})", None, True)
    if status == 401:
        return Check("registry", "warn", f"{reg.url} needs credentials",
                     "set registry.username and NOMAD_REGISTRY_PASSWORD", True)  # fmt: skip
    return Check("registry", "fail", f"{reg.url}/v2/ answered {status}",
                 "is this a distribution (OCI) registry?", True)  # fmt: skip


_PG_PROBE = """
import os, sys
try:
    import psycopg
    psycopg.connect(os.environ["NOMAD_DOCTOR_DSN"], connect_timeout=3).close()
except Exception as exc:
    lines = str(exc).strip().splitlines() or [""]
    print(type(exc).__name__ + ": " + lines[-1])
    sys.exit(1)
"""


def _database(cfg: NomadConfig, data_dir: Path) -> Check:
    url = cfg.queue.url.get_secret_value() if cfg.queue.url else ""
    if url.startswith(("postgresql://", "postgres://")):
        # The DSN may hold a password: hand it over in the environment, never argv or output.
        env = {**os.environ, "NOMAD_DOCTOR_DSN": url}
        code, out = _run([sys.executable, "-c", _PG_PROBE], timeout=10, env=env)
        if code == 0:
            return Check("database", "ok", "PostgreSQL reachable", None, True)
        last = out.replace(url, "<queue.url>")
        return Check("database", "fail", f"PostgreSQL not reachable: {last[-200:]}",
                     "check queue.url / NOMAD_QUEUE_URL and that the server is up", True)  # fmt: skip
    if url and not url.startswith("sqlite://"):
        return Check("database", "fail", "queue.url has an unsupported scheme",
                     "use postgresql://… or sqlite:///…", True)  # fmt: skip
    path = _sqlite_path(url, data_dir)
    folder = path.parent
    if folder.is_dir() and os.access(folder, os.W_OK):
        return Check("database", "ok", f"SQLite at {path}", None, True)
    return Check("database", "fail", f"cannot write SQLite queue folder {folder}",
                 "fix the permissions or set queue.url", True)  # fmt: skip


def _sqlite_path(url: str, data_dir: Path) -> Path:
    if not url:
        return data_dir / "queue.db"
    # Same rule as nomad.queue.open_queue: sqlite:////abs/path, sqlite:///relative/path.
    rest = url.removeprefix("sqlite://").removeprefix("/")
    return Path("/" + rest) if url.startswith("sqlite:////") else Path(rest)


def _privacy(cfg: NomadConfig, data_dir: Path) -> Check:
    pv = cfg.privacy
    name = pv.binary or pv.client
    path = shutil.which(name)
    fix = (
        "install the Anyone network client (`anon`), or set privacy.client: tor"
        if pv.client == "anon"
        else "apt-get install tor"
    )
    if pv.enabled:
        return _privacy_live(cfg, data_dir, path, fix)
    if path:
        return Check(f"{pv.client} client", "ok", path, None, pv.enabled)
    return Check(f"{pv.client} client", "warn", f"`{name}` not found (privacy routing is off)", fix)


def _privacy_legs(cfg: NomadConfig) -> list[Check]:
    """Privacy on: one line per leg switched off (privacy.legs.<leg>: false goes direct)."""
    from nomad.privacy import direct_legs

    fix = "set privacy.legs.{}: true to route it"
    return [
        Check(
            f"privacy leg {leg}",
            "warn",
            "goes direct, not through the proxy",
            fix.format(leg),
            True,
        )
        for leg in direct_legs(cfg.privacy)
    ]


def _privacy_live(cfg: NomadConfig, data_dir: Path, path: str | None, install: str) -> Check:
    """Privacy on: a binary on PATH is not enough — the SOCKS port must answer, and be bootstrapped."""
    from nomad.privacy.guard import probe_socks

    pv = cfg.privacy
    label = f"{pv.client} client"
    problem = probe_socks(pv.proxy)
    if problem is not None:
        if pv.mode == "managed" and path:
            return _managed_idle(cfg, data_dir, label, problem)
        if pv.mode == "managed":
            fix = install
        else:
            fix = "start your anon/tor client, or set privacy.mode: managed so nomad runs it"
        return Check(label, "fail", problem, fix, True)
    detail = f"SOCKS5 answers at {pv.proxy.partition('://')[2]}"
    if pv.mode == "managed":
        from nomad.errors import PrivacyError
        from nomad.privacy.managed import ManagedClient

        try:
            boot = ManagedClient(pv, data_dir).bootstrap()
        except (OSError, PrivacyError):
            return Check(label, "ok", detail + " (not nomad's client: no control port)", None, True)
        if boot.progress < 100:
            return Check(label, "warn", f"{detail}, bootstrap {boot.progress}% ({boot.summary})",
                         "wait for it, or check the network / the client's log", True)  # fmt: skip
        detail += ", bootstrapped 100%"
    return Check(label, "ok", detail, None, True)


def _managed_idle(cfg: NomadConfig, data_dir: Path, label: str, problem: str) -> Check:
    """Managed and not running: normal between commands (the first one that needs the proxy
    starts it) — but its config must be one the binary accepts, so have it check it now."""
    from nomad.errors import PrivacyError
    from nomad.privacy.managed import ManagedClient

    try:
        ManagedClient(cfg.privacy, data_dir).verify_config()
    except PrivacyError as exc:
        return Check(label, "fail", f"{problem}; {exc.message}", exc.hint or "fix privacy.* in nomad.yaml", True)
    return Check(
        label, "warn",
        f"not running ({problem}); the config nomad writes for it passes --verify-config",
        "nothing to do: the first command that needs the proxy starts it (or `nomad serve`)", True,
    )  # fmt: skip


def this_command() -> Path | None:
    """The ``nomad`` console script of this install (the one running, or beside its Python)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "nomad" and argv0.is_file():
        return argv0.resolve()
    beside = Path(sys.executable).parent / "nomad"
    return beside.resolve() if beside.is_file() else None


def _is_ours(path: Path) -> bool:
    """A nomad console script (any install of this project): a small text file naming our entry point."""
    try:
        with path.open("rb") as fh:
            return b"nomad.cli.main" in fh.read(4096)
    except OSError:
        return False


def command_on_path(path_env: str, ours: Path | None) -> Check:
    """Which ``nomad`` a shell runs: warn when another program (HashiCorp Nomad…) shadows this one."""
    found: list[Path] = []
    for folder in filter(None, path_env.split(os.pathsep)):
        cand = Path(folder) / "nomad"
        if cand.is_file() and os.access(cand, os.X_OK) and cand.resolve() not in found:
            found.append(cand.resolve())
    here = str(ours) if ours else "this install's nomad"
    activate = (
        f"run {here} by its full path, or put {ours.parent if ours else 'its bin/'} first on PATH"
    )
    if not found:
        return Check("nomad on PATH", "warn", f"no `nomad` on PATH (this one is {here})",
                     f"{activate} (e.g. `source .venv/bin/activate`)")  # fmt: skip
    first = found[0]
    if ours is not None and first == ours:
        others = [str(p) for p in found[1:]]
        detail = str(first) + (f" (also on PATH, shadowed: {', '.join(others)})" if others else "")
        return Check("nomad on PATH", "ok", detail)
    if _is_ours(first):
        return Check("nomad on PATH", "warn", f"`nomad` runs another install of nomad: {first}",
                     activate)  # fmt: skip
    return Check(
        "nomad on PATH",
        "warn",
        f"`nomad` on PATH is a different program ({first}, e.g. HashiCorp Nomad); it shadows this one",
        activate,
    )


def _catalog() -> Check:
    from nomad.resources import catalog_dir

    try:
        path = catalog_dir()
    except NomadError as exc:
        return Check("catalog snapshot", "fail", exc.message, exc.hint)
    return Check("catalog snapshot", "ok", f"{path} (offline plans: nomad plan --catalog {path})")
