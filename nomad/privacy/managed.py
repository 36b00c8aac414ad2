"""The ``anon`` (or ``tor``) client started, watched and stopped by nomad (``privacy.mode: managed``).

Why nomad runs it instead of asking the user to: a proxy that is down or
still bootstrapping makes every proxied connect hang or fail, and the user
only learns it from a stuck job. Managed, nomad writes the config, starts the
binary it was given (config, ``$ANON_BIN``, PATH — it never downloads one),
waits until the client reports 100 % bootstrap on its control port, restarts
it if it dies, and stops it by pid.

The control port speaks Tor's line protocol; the three commands used here
(``AUTHENTICATE`` with the cookie, ``GETINFO status/bootstrap-phase``) are
small enough that no control library is needed at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nomad.config.schema import PrivacyConfig
from nomad.errors import PrivacyError
from nomad.osutil import pid_alive
from nomad.privacy.client import check_config, find_binary, render_config
from nomad.privacy.guard import probe_socks
from nomad.privacy.onion import OnionAddress, read_hostname


@dataclass(frozen=True)
class Bootstrap:
    """What the client says about its bootstrap (``PROGRESS``, ``TAG``, ``SUMMARY``)."""

    progress: int
    tag: str
    summary: str


@dataclass(frozen=True)
class ServiceAddress:
    """One configured hidden service: its published address, or why there is none yet."""

    name: str
    target: str
    address: str | None
    problem: str | None = None


@dataclass(frozen=True)
class ClientStatus:
    """The managed client as ``nomad dev status`` shows it (nothing secret: no cookie, no keys)."""

    client: str
    pid: int | None
    proxy: str
    socks_problem: str | None  # None: a SOCKS5 server answers the greeting at ``proxy``
    bootstrap: Bootstrap | None  # None: no control port answered (not running, or starting)
    restarts: int | None  # by the supervisor of the last start; None when never started here
    services: tuple[ServiceAddress, ...]
    detail: str | None = None  # why it is not healthy

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def healthy(self) -> bool:
        """Running, bootstrapped to 100 % and answering SOCKS."""
        done = self.bootstrap is not None and self.bootstrap.progress >= 100
        return self.running and done and self.socks_problem is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "running": self.running, "healthy": self.healthy}


class ManagedClient:
    """One anon/tor process for this data dir; safe to call :meth:`start` again (adopts a live one)."""

    def __init__(
        self,
        cfg: PrivacyConfig,
        data_dir: Path,
        *,
        binary: str | None = None,
        extra_config: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.base = data_dir / "privacy"
        self.data_dir = data_dir
        self.binary = binary  # else privacy.binary, $ANON_BIN (anon), PATH — never a download
        self.extra = list(extra_config)
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    # -- files ------------------------------------------------------------------------------

    @property
    def rc_path(self) -> Path:
        return self.base / f"{self.cfg.client}rc"

    @property
    def pid_path(self) -> Path:
        return self.base / "client.pid"

    @property
    def log_path(self) -> Path:
        return self.base / "client.log"

    @property
    def control_file(self) -> Path:
        return self.base / "control.port"

    @property
    def cookie_path(self) -> Path:
        return self.base / "control.cookie"

    @property
    def restarts_path(self) -> Path:
        return self.base / "restarts"

    def config_text(self) -> str:
        """The rendered config plus the control port nomad needs to watch bootstrap."""
        lines = [
            render_config(self.cfg, self.data_dir).rstrip("\n"),
            "ControlPort auto",
            f"ControlPortWriteToFile {self.control_file}",
            "CookieAuthentication 1",
            f"CookieAuthFile {self.cookie_path}",
            f"PidFile {self.pid_path}",
            *self.extra,
        ]
        return "\n".join(lines) + "\n"

    # -- lifecycle ---------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The running client's pid from its pid file, or None if it is not running."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if self.proc is not None and self.proc.pid == pid and self.proc.poll() is not None:
            return None  # our own child, exited (poll() reaped it)
        return pid if pid_alive(pid) else None

    def start(self, timeout: float = 120.0) -> None:
        """Start (or adopt) the client and wait for 100 % bootstrap; PrivacyError if it cannot."""
        if self.pid() is not None:
            self.wait_bootstrapped(timeout)
            return
        binary = self.binary or self._binary()
        self.control_file.unlink(missing_ok=True)
        self.write_config()
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [binary, "-f", str(self.rc_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for nomad must not kill the proxy mid-request
                env=_client_env(),
            )
        except OSError as exc:
            raise PrivacyError(
                f"cannot start {binary}: {exc.strerror or exc}",
                hint="fix privacy.binary (or $ANON_BIN), or put the client on PATH",
            ) from None
        finally:
            log.close()
        self.pid_path.write_text(f"{self.proc.pid}\n")
        self.restarts_path.write_text(f"{self.restarts}\n")  # for `nomad dev status` elsewhere
        self.wait_bootstrapped(timeout)

    def write_config(self) -> Path:
        """Create the data and hidden-service dirs (0700) and write the config :meth:`start` runs."""
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.base / "data").mkdir(exist_ok=True, mode=0o700)
        for hs in self.cfg.hidden_services:
            (self.base / "hs" / hs.name).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.rc_path.write_text(self.config_text())
        return self.rc_path

    def verify_config(self) -> Path:
        """Write the config and have the real binary check it (``--verify-config``), client stopped only."""
        if self.pid() is not None:  # the check truncates the live client's control-port file
            raise PrivacyError(
                f"the {self.cfg.client} client is running (pid {self.pid()}): its config is in use",
                hint="stop it first, or check a copy under another data dir",
            )
        path = self.write_config()
        check_config(self.binary or self._binary(), path)
        return path

    def wait_bootstrapped(self, timeout: float) -> Bootstrap:
        """Poll the control port until PROGRESS=100; fail fast if the process exits."""
        deadline = self.clock() + timeout
        last: Bootstrap | None = None
        while True:
            if self.pid() is None and (self.proc is None or self.proc.poll() is not None):
                raise PrivacyError(
                    f"the {self.cfg.client} client exited during start-up: {self.log_tail()}",
                    hint=f"see {self.log_path}",
                )
            try:
                last = self.bootstrap()
            except (OSError, PrivacyError):
                last = last  # control port not up yet
            if last is not None and last.progress >= 100:
                return last
            if self.clock() >= deadline:
                where = f"{last.progress}% ({last.summary})" if last else "no control port yet"
                raise PrivacyError(
                    f"the {self.cfg.client} client did not bootstrap within {timeout:g} s: {where}",
                    hint="check the network, or the client's log: " + str(self.log_path),
                )
            time.sleep(0.25)

    def bootstrap(self, timeout: float = 5.0) -> Bootstrap:
        """Ask the control port for the bootstrap phase."""
        reply = self._control(["GETINFO status/bootstrap-phase"], timeout)
        fields = dict(_kv(reply))
        return Bootstrap(
            int(fields.get("PROGRESS", "0")), fields.get("TAG", ""), fields.get("SUMMARY", "")
        )

    def ensure_running(self, timeout: float = 120.0) -> bool:
        """Restart the client if it died; True when it had to be restarted."""
        if self.pid() is not None:
            return False
        self.restarts += 1
        self.proc = None
        self.start(timeout)
        return True

    def supervise(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Keep the client running until ``stop`` is set (run in a thread by ``serve``)."""
        while not stop.wait(interval):
            try:
                self.ensure_running()
            except PrivacyError:
                continue  # logged by the caller's doctor/status; the next round retries

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM by pid, SIGKILL after ``grace`` seconds; idempotent."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and pid_alive(pid):
            if self.proc is not None and self.proc.pid == pid:
                self.proc.poll()
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=5)
        self.pid_path.unlink(missing_ok=True)

    def status(self, timeout: float = 1.0) -> ClientStatus:
        """Pid, SOCKS answer, bootstrap, restarts and addresses as seen right now (any process may ask)."""
        pid = self.pid()
        boot: Bootstrap | None = None
        if pid is not None:
            with contextlib.suppress(OSError, PrivacyError):
                boot = self.bootstrap(timeout)
        socks = probe_socks(self.cfg.proxy, timeout)
        return ClientStatus(
            client=self.cfg.client,
            pid=pid,
            proxy=self.cfg.proxy,
            socks_problem=socks,
            bootstrap=boot,
            restarts=self._saved_restarts(),
            services=tuple(self._service(hs.name, hs.target) for hs in self.cfg.hidden_services),
            detail=self._why(pid, boot, socks),
        )

    def _why(self, pid: int | None, boot: Bootstrap | None, socks: str | None) -> str | None:
        if pid is None:
            last = self.log_tail(1) if self.log_path.exists() else None
            return "not running (`nomad serve` starts it)" + (f"; log: {last}" if last else "")
        if boot is None:
            return f"no answer on its control port (log: {self.log_path})"
        if boot.progress < 100:
            return f"bootstrap {boot.progress}% ({boot.summary})"
        return socks

    def _saved_restarts(self) -> int | None:
        try:
            return int(self.restarts_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def _service(self, name: str, target: str) -> ServiceAddress:
        try:
            return ServiceAddress(name, target, read_hostname(self.base / "hs" / name).host)
        except PrivacyError as exc:
            return ServiceAddress(name, target, None, str(exc))

    # -- hidden services -----------------------------------------------------------------------

    def addresses(self) -> dict[str, OnionAddress]:
        """The published address of each configured hidden service (verified)."""
        return {
            hs.name: read_hostname(self.base / "hs" / hs.name) for hs in self.cfg.hidden_services
        }

    # -- helpers -------------------------------------------------------------------------------

    def _binary(self) -> str:
        env = os.environ.get("ANON_BIN") if self.cfg.client == "anon" else None
        if not self.cfg.binary and env:
            return env
        return find_binary(self.cfg)

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [ln.strip() for ln in text.strip().splitlines()[-lines:]]
        return " / ".join(tail) or "(empty log)"

    def _control(self, commands: list[str], timeout: float = 5.0) -> str:
        try:
            port = self.control_file.read_text().strip().rpartition(":")[2]
            cookie = self.cookie_path.read_bytes()
        except OSError as exc:
            raise PrivacyError("control port not ready") from exc
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout) as sock:
            f = sock.makefile("rwb")
            lines = [f"AUTHENTICATE {cookie.hex()}", *commands, "QUIT"]
            f.write(("\r\n".join(lines) + "\r\n").encode())
            f.flush()
            out = f.read().decode(errors="replace")
        if not out.startswith("250"):
            raise PrivacyError(f"control port refused: {out.strip()[:120]}")
        return out


def _kv(reply: str) -> list[tuple[str, str]]:
    """``KEY=value`` and ``KEY="quoted value"`` pairs of a control reply."""
    out: list[tuple[str, str]] = []
    for token in _tokens(reply):
        key, sep, value = token.partition("=")
        if sep:
            out.append((key, value.strip('"')))
    return out


def _tokens(text: str) -> list[str]:
    tokens, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch.isspace() and not quoted:
            if cur:
                tokens.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        tokens.append(cur)
    return tokens


def _client_env() -> dict[str, str]:
    """The proxy gets no secrets and no proxy settings of ours (it is a third-party binary)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    return {k: v for k, v in os.environ.items() if k in keep}


def managed_status(cfg: PrivacyConfig, data_dir: Path) -> ClientStatus | None:
    """The managed client's status, or None unless privacy is on with ``mode: managed``."""
    if not (cfg.enabled and cfg.mode == "managed"):
        return None
    return ManagedClient(cfg, data_dir).status()


@contextlib.asynccontextmanager
async def supervised(cfg: PrivacyConfig, data_dir: Path) -> AsyncIterator[ManagedClient | None]:
    """For ``nomad serve``: with ``privacy.mode: managed``, the client runs (and is restarted) while inside.

    Yields None when privacy is off or the proxy is the user's own (``external``).
    """
    if not (cfg.enabled and cfg.mode == "managed"):
        yield None
        return
    client = ManagedClient(cfg, data_dir)
    await asyncio.to_thread(client.start)
    stop = threading.Event()
    watcher = threading.Thread(
        target=client.supervise, args=(stop,), name="anon-supervisor", daemon=True
    )
    watcher.start()
    try:
        yield client
    finally:
        stop.set()
        await asyncio.to_thread(watcher.join, 5)
        await asyncio.to_thread(client.stop)
