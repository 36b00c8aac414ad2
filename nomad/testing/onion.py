"""A private onion network from the real binaries, for tests that must not pretend.

Three directory authorities, relays, a hidden service in front of a local
service, all Tor-protocol processes (Debian ``tor``, or the Anyone network's
``anon``) on 127.0.0.1 with ``TestingTorNetwork 1``. **Run it only inside a
network namespace** (``unshare -n``): a default config would try to reach the
real network, and the fixed ports here are safe only in a namespace of one's
own. :func:`main` is the driver the tests start with ``unshare -n``.

Facts this follows (../shared/notes/telegram-and-privacy.md): authorities'
v3 keys come from ``tor-gencert`` (``anon-gencert``); relays' fingerprints from
``--list-fingerprint``; anon needs ``AgreeToTerms 1`` even for that; the
network bootstraps in 7-20 s; the first request to a new hidden service can
fail until its descriptor is published (retry).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

AUTH_BASE_OR, AUTH_BASE_DIR, RELAY_BASE_OR = 5000, 7000, 5100

COMMON = [
    "TestingTorNetwork 1",
    "PathsNeededToBuildCircuits 0.67",
    "TestingDirAuthVoteExit *",
    "TestingDirAuthVoteHSDir *",
    "TestingDirAuthVoteGuard *",
    "TestingMinExitFlagThreshold 0",
    "V3AuthNIntervalsValid 2",
    "AssumeReachable 1",
    "ShutdownWaitLength 0",
    "SafeLogging 0",
    "Log notice stdout",
]
AUTHORITY = [
    "AuthoritativeDirectory 1",
    "V3AuthoritativeDirectory 1",
    "AuthDirMaxServersPerAddr 0",
    "TestingV3AuthInitialVotingInterval 5",
    "TestingV3AuthInitialVoteDelay 2",
    "TestingV3AuthInitialDistDelay 2",
    "V3AuthVotingInterval 10",
    "V3AuthVoteDelay 2",
    "V3AuthDistDelay 2",
    "ExitPolicy reject *:*",
]


@dataclass
class Node:
    """One Tor-protocol process of the network."""

    name: str
    datadir: Path
    lines: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def rc(self) -> Path:
        return self.datadir / "torrc"


@dataclass
class PrivateNetwork:
    """Authorities + relays on loopback; :meth:`client_lines` joins anything else to it."""

    workdir: Path
    binary: str = "tor"
    gencert: str = "tor-gencert"
    authorities: int = 3
    relays: int = 2
    nodes: list[Node] = field(default_factory=list)
    dir_lines: list[str] = field(default_factory=list)

    @property
    def is_anon(self) -> bool:
        return Path(self.binary).name.startswith("anon")

    def _terms(self) -> list[str]:
        return ["AgreeToTerms 1"] if self.is_anon else []

    def client_lines(self) -> list[str]:
        """Config lines that make any client or service use this network."""
        return [*COMMON, *self.dir_lines]

    def start(self) -> None:
        """Generate keys, start every authority and relay (they bootstrap together)."""
        auths = [self._make_authority(i) for i in range(self.authorities)]
        self.dir_lines = [line for _, line in auths]
        for i, (node, _) in enumerate(auths):
            node.lines = [
                *COMMON, *AUTHORITY, *self._terms(), *self.dir_lines,
                f"Nickname auth{i}", f"ORPort {AUTH_BASE_OR + i}", f"DirPort {AUTH_BASE_DIR + i}",
                "Address 127.0.0.1", "SocksPort 0",
            ]  # fmt: skip
            self.nodes.append(node)
        for i in range(self.relays):
            d = self.workdir / f"relay{i}"
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            lines = [
                *COMMON, *self._terms(), *self.dir_lines, f"DataDirectory {d}",
                f"Nickname relay{i}", f"ORPort {RELAY_BASE_OR + i}", "Address 127.0.0.1",
                "SocksPort 0", "ExitRelay 0", "ExitPolicy reject *:*",
            ]  # fmt: skip
            self.nodes.append(Node(f"relay{i}", d, lines))
        for node in self.nodes:
            self.launch(node)

    def launch(self, node: Node) -> None:
        """Write the node's torrc and start it, logging to datadir/log."""
        if not any(line.startswith("DataDirectory") for line in node.lines):
            node.lines.append(f"DataDirectory {node.datadir}")
        node.rc.write_text("\n".join(node.lines) + "\n")
        log = (node.datadir / "log").open("ab")
        node.proc = subprocess.Popen(
            [self.binary, "-f", str(node.rc)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def add_hidden_service(self, name: str, target: str, port: int = 80) -> Node:
        """A service-side instance publishing ``target`` (host:port or unix:path) as a hidden service."""
        d = self.workdir / name
        hs = d / "hs"
        hs.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            *self.client_lines(), *self._terms(), f"DataDirectory {d}", "SocksPort 0",
            f"HiddenServiceDir {hs}", f"HiddenServicePort {port} {target}",
        ]  # fmt: skip
        node = Node(name, d, lines)
        self.nodes.append(node)
        self.launch(node)
        return node

    def hostname(self, node: Node, timeout: float = 30.0) -> str:
        """The hidden service's address, once the process has written it."""
        path = node.datadir / "hs" / "hostname"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            time.sleep(0.2)
        raise RuntimeError(
            f"{path} not written within {timeout:g} s; log: {_tail(node.datadir / 'log')}"
        )

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()

    def _make_authority(self, i: int) -> tuple[Node, str]:
        d = self.workdir / f"auth{i}"
        keys = d / "keys"
        keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            [
                self.gencert,
                "--create-identity-key",
                "--passphrase-fd",
                "0",
                "-m",
                "12",
                "-a",
                f"127.0.0.1:{AUTH_BASE_DIR + i}",
                "-i",
                str(keys / "authority_identity_key"),
                "-s",
                str(keys / "authority_signing_key"),
                "-c",
                str(keys / "authority_certificate"),
            ],
            input=b"\n",
            check=True,
            capture_output=True,
            cwd=d,
        )
        v3ident = _cert_fingerprint(keys / "authority_certificate")
        subprocess.run(
            [
                self.binary,
                "--list-fingerprint",
                "--DataDirectory",
                str(d),
                "--ORPort",
                "1",
                "--DirAuthority",
                f"x orport=1 no-v2 127.0.0.1:1 {'F' * 40}",
                *self._terms_args(),
            ],
            check=True,
            capture_output=True,
        )
        fingerprint = (d / "fingerprint").read_text().split()[1]
        line = (
            f"DirAuthority auth{i} orport={AUTH_BASE_OR + i} no-v2 v3ident={v3ident} "
            f"127.0.0.1:{AUTH_BASE_DIR + i} {fingerprint}"
        )
        return Node(f"auth{i}", d, []), line

    def _terms_args(self) -> list[str]:
        return ["--AgreeToTerms", "1"] if self.is_anon else []


def _cert_fingerprint(cert: Path) -> str:
    for line in cert.read_text().splitlines():
        if line.startswith("fingerprint "):
            return line.split()[1]
    raise RuntimeError(f"no fingerprint in {cert}")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def inet_connects(strace_text: str) -> list[str]:
    """``host:port`` of every AF_INET/AF_INET6 connect/sendto in an strace log (DNS shows as :53)."""
    import re

    found = []
    for m in re.finditer(
        r"(?:connect|sendto|sendmsg)\(.*?sin6?_port=htons\((\d+)\).*?(?:inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\")",
        strace_text,
    ):
        found.append(f"{m.group(2) or m.group(3)}:{m.group(1)}")
    return found


def loopback_up() -> None:
    """Bring ``lo`` up in a fresh namespace (it starts down)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)


# --------------------------------------------------------------------------------- driver


def _retry_run(
    cmd: list[str], env: dict[str, str], tries: int, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` until it succeeds (a fresh hidden service is unreachable until its descriptor is up)."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for _ in range(tries - 1):
        if proc.returncode == 0:
            break
        time.sleep(3)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc


def _result(name: str, proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return {
        "name": name,
        "rc": proc.returncode,
        "stdout": proc.stdout[-2000:],
        "stderr": proc.stderr[-2000:],
    }


def scenario(args: argparse.Namespace) -> dict[str, object]:
    """FakeComfy behind a hidden service; nomad's managed client; ``nomad run`` by the onion name."""
    from nomad.config.schema import PrivacyConfig
    from nomad.privacy.managed import ManagedClient

    work = Path(args.workdir)
    loopback_up()
    t0 = time.monotonic()
    net = PrivateNetwork(work / "net", binary=args.binary, gencert=args.gencert)
    report: dict[str, object] = {"binary": args.binary}
    comfy = subprocess.Popen(
        [sys.executable, "-m", "nomad.testing.comfy", "--port", "8188"],
        stdout=(work / "comfy.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    client: ManagedClient | None = None
    try:
        net.start()
        hs = net.add_hidden_service("comfy-hs", "127.0.0.1:8188")
        host = net.hostname(hs)
        report["address"] = host
        client_kind = "anon" if net.is_anon else "tor"
        cfg = PrivacyConfig(enabled=True, client=client_kind, binary=args.binary)
        client = ManagedClient(cfg, work / "nomad-data", extra_config=net.client_lines())
        client.start(timeout=args.bootstrap_timeout)
        report["bootstrap_s"] = round(time.monotonic() - t0, 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOMAD_")}
        env |= {"NOMAD_PROXY": cfg.proxy, "NOMAD_DATA_DIR": str(work / "cli-data")}
        out = work / "out"
        cmd = [
            str(Path(sys.executable).with_name("nomad")), "run", "flux_schnell",
            "--endpoint", f"http://{host}", "--set", "prompt=an astronaut", "--set", "steps=2",
            "--out", str(out), "--timeout", "120", "--json",
        ]  # fmt: skip
        first = _retry_run(cmd, env, tries=15, timeout=180)
        report["first_run"] = _result("run", first)
        report["outputs"] = sorted(p.name for p in out.glob("*")) if out.exists() else []
        # Kill the supervised client: nomad restarts it and the traffic resumes.
        pid = client.pid()
        if pid is not None:
            os.kill(pid, 9)
            deadline = (
                time.monotonic() + 10
            )  # SIGKILL lands asynchronously; the supervisor sees it next round
            while client.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        report["restarted"] = client.ensure_running(timeout=args.bootstrap_timeout)
        report["pid_changed"] = client.pid() not in (None, pid)
        again = _retry_run(cmd, env, tries=10, timeout=180)
        report["second_run"] = _result("run", again)
        strace = shutil.which("strace")
        if strace:  # every connect nomad makes, seen by the kernel's syscall trace
            trace = work / "strace.txt"
            traced = [
                strace,
                "-f",
                "-qq",
                "-e",
                "trace=connect,sendto,sendmsg",
                "-o",
                str(trace),
                *cmd,
            ]
            report["traced_run"] = _result("run", _retry_run(traced, env, tries=3, timeout=180))
            report["connects"] = inet_connects(trace.read_text())
    finally:
        if client is not None:
            client.stop()
        net.stop()
        comfy.terminate()
        comfy.wait(timeout=10)
    report["total_s"] = round(time.monotonic() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m nomad.testing.onion",
        description="Run the private-onion-network scenario. ONLY inside `unshare -n`.",
    )
    p.add_argument("workdir")
    p.add_argument("--binary", default=shutil.which("tor") or "tor")
    p.add_argument("--gencert", default=shutil.which("tor-gencert") or "tor-gencert")
    p.add_argument("--bootstrap-timeout", type=float, default=120.0)
    args = p.parse_args(argv)
    if not Path("/proc/self/ns/net").exists() or os.environ.get("NOMAD_ONION_NETNS") != "1":
        raise SystemExit(
            "refusing to run outside a network namespace (set by the test via unshare -n)"
        )
    print(json.dumps(scenario(args)))


if __name__ == "__main__":
    main()
