"""`nomad serve` and `nomad web` end to end through a private onion network (driver; ONLY inside `unshare -n`).

What runs, all from real binaries on loopback inside the namespace the test
made: the private network of :mod:`nomad.testing.onion` (Debian ``tor`` or
``anon``); the embedded stack (SeaweedFS + registry); ``nomad web``; and
``nomad serve`` under ``strace -ff`` with ``privacy.mode: managed`` — its
client publishes the web door as a hidden service — and ``privacy.node``, so
the local backend's node runs its own client that publishes each FakeComfy
as a hidden service with the key nomad made.

The "user" (this driver) reaches the web door only by its onion address
through the managed client's SOCKS port: submits a job, polls it, downloads
the image. serve reaches the node only by its onion address. The strace
files then show which addresses nomad's own processes connected to; node
processes (the local supervisor and what it starts) and the Tor-protocol
processes are told apart by the program each one executed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nomad.testing.onion import PrivateNetwork, _tail, loopback_up

WEB_PORT, COMFY_PORT, SOCKS_PORT = 8080, 8188, 9050
TOKEN = "onion-token-0123456789"
MARKER = "a lighthouse keeper named Zyxwvut"


def _nomad() -> str:
    return str(Path(sys.executable).with_name("nomad"))


def _wait(what: str, check: Any, timeout: float, interval: float = 0.5) -> Any:
    """:func:`nomad.testing.wait.eventually` with this driver's argument order."""
    from nomad.testing.wait import eventually

    return eventually(check, timeout=timeout, interval=interval, what=what)


def classify(trace_dir: Path) -> dict[str, list[str]]:
    """``{role: [host:port, …]}`` of every inet connect/sendto in ``strace -ff`` files.

    A file whose process executed ``tor``/``anon`` is the proxy (role ``client``), one that
    executed the local supervisor, ``nomad.testing.comfy`` or a node client is ``node``;
    every other file (``nomad serve`` and its threads) is ``nomad``."""
    from nomad.testing.onion import inet_connects

    roles: dict[str, list[str]] = {"nomad": [], "node": [], "client": []}
    node_client_rc = "hs-client.rc"
    for f in sorted(trace_dir.iterdir()):
        text = f.read_text(errors="replace")
        execs = re.findall(r'execve\("([^"]+)", \[(.*?)\]', text)
        argv = " ".join(f"{path} {args}" for path, args in execs)
        if "nomad.backends.local.supervisor" in argv or "nomad.testing.comfy" in argv or node_client_rc in argv:
            role = "node"
        elif re.search(r"/(tor|anon)\b", argv):
            role = "client"
        else:
            role = "nomad"
        roles[role].extend(inet_connects(text))
    return roles


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from nomad.dev.stack import Stack

    work = Path(args.workdir)
    loopback_up()
    t0 = time.monotonic()
    report: dict[str, Any] = {"binary": args.binary}
    net = PrivateNetwork(work / "net", binary=args.binary, gencert=args.gencert)
    stack = Stack(work / "stack-data", die_with_parent=True)
    procs: list[subprocess.Popen[bytes]] = []
    serve: subprocess.Popen[bytes] | None = None
    data = work / "data"
    try:
        net.start()
        info = stack.up()
        client = "anon" if net.is_anon else "tor"
        comfy = [sys.executable, "-m", "nomad.testing.comfy", "--host", "127.0.0.1", "--port", "{port}"]
        cfg = {
            "project": "onion",
            "storage": {"bucket": "onion-outputs"},
            "image": {"comfyui": {"port": COMFY_PORT}},
            "queue": {"lease_seconds": 60},
            "web": {"port": WEB_PORT, "tokens": [TOKEN]},
            "infra": {
                "backend": "local", "idle_minutes": 5, "health_timeout_seconds": 240,
                "local": {"mode": "command", "command": comfy, "gpus": 1,
                          "price_per_hour": 0.5, "gpu_name": "fake-gpu"},
            },
            "privacy": {
                "enabled": True, "mode": "managed", "client": client, "binary": args.binary,
                "proxy": f"socks5h://127.0.0.1:{SOCKS_PORT}", "connect_timeout": 60,
                "extra_config": net.client_lines(),
                "hidden_services": [{"name": "web", "port": 80, "target": f"127.0.0.1:{WEB_PORT}"}],
                "node": {"client": client, "binary": args.binary},
                # the stack's S3 is on this machine's loopback: no exit relay would go there
                "legs": {"s3": False},
            },
        }  # fmt: skip
        (work / "nomad.yaml").write_text(json.dumps(cfg))
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOMAD_")}
        env |= {
            "NOMAD_CONFIG": str(work / "nomad.yaml"), "NOMAD_DATA_DIR": str(data),
            "NOMAD_S3_ENDPOINT": info.s3_endpoint, "NOMAD_S3_ACCESS_KEY_ID": info.access_key,
            "NOMAD_S3_SECRET_ACCESS_KEY": info.secret_key, "NOMAD_S3_REGION": info.region,
        }  # fmt: skip
        from nomad.storage import Storage

        Storage(info.s3_settings("onion-outputs")).ensure_bucket()
        web_log = (work / "web.log").open("ab")
        procs.append(subprocess.Popen([_nomad(), "web"], env=env, stdout=web_log, stderr=subprocess.STDOUT))
        traces = work / "trace"
        traces.mkdir()
        serve_cmd = [_nomad(), "-v", "serve", "--interval", "0.5", "--grace", "5"]
        strace = shutil.which("strace")
        if strace:
            serve_cmd = [strace, "-ff", "-qq", "-e", "trace=connect,sendto,sendmsg,execve",
                         "-o", str(traces / "t"), *serve_cmd]  # fmt: skip
        serve_log = (work / "serve.log").open("ab")
        serve = subprocess.Popen(serve_cmd, env=env, stdout=serve_log, stderr=subprocess.STDOUT)
        web_host = _wait(
            "the web door's hidden service",
            lambda: (data / "privacy/hs/web/hostname").exists()
            and (data / "privacy/hs/web/hostname").read_text().strip(),
            timeout=args.bootstrap_timeout,
        )
        report["web_address"] = web_host
        proxy = f"socks5h://127.0.0.1:{SOCKS_PORT}"
        user = httpx.Client(proxy=proxy, timeout=30, trust_env=False)
        base = f"http://{web_host}"

        def health() -> bool:
            try:
                return user.get(base + "/api/health").status_code == 200
            except httpx.HTTPError:
                return False

        _wait("the web door through the onion network", health, timeout=180, interval=2)
        report["web_reachable_s"] = round(time.monotonic() - t0, 1)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        sub = user.post(base + "/api/jobs", headers=auth,
                        json={"workflow": "flux_schnell", "params": {"prompt": MARKER, "steps": 2}})  # fmt: skip
        report["submit_status"] = sub.status_code
        job_id = sub.json()["id"]

        def finished() -> dict[str, Any] | None:
            try:
                doc = user.get(f"{base}/api/jobs/{job_id}", headers=auth).json()
            except (httpx.HTTPError, ValueError):
                return None
            return doc if doc.get("status") in ("succeeded", "failed", "cancelled") else None

        job = _wait("the job to finish", finished, timeout=360, interval=2)
        report["job"] = {k: job.get(k) for k in ("status", "error", "outputs", "phases")}
        report["job_done_s"] = round(time.monotonic() - t0, 1)
        if job.get("status") == "succeeded":
            png = user.get(f"{base}/api/jobs/{job_id}/outputs/0", headers=auth)
            report["output_status"] = png.status_code
            report["output_is_png"] = png.content.startswith(b"\x89PNG")
            report["output_has_marker"] = MARKER.encode() in png.content
            report["output_text_chunks"] = _text_chunks(png.content)
        status = subprocess.run([_nomad(), "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
        report["status"] = json.loads(status.stdout) if status.returncode == 0 else status.stderr[-500:]
        from nomad.privacy.keys import read_key

        key_dir = data / "privacy/keys/slot0/gpu0"
        report["node_address"] = read_key(key_dir).address("anon" if client == "anon" else "onion") if key_dir.exists() else None
        report["control_port"] = _control_port(data)
        report["s3_port"] = int(info.s3_endpoint.rstrip("/").rpartition(":")[2])
        os.kill(_tracee(serve.pid), signal.SIGTERM)  # nomad itself, not strace in front of it
        try:
            report["serve_rc"] = serve.wait(timeout=90)
        except subprocess.TimeoutExpired:
            report["serve_rc"] = "did not exit within 90 s of SIGTERM"
            _kill_traced(serve)
        serve = None
        if strace:
            report["connects"] = classify(traces)
        report["cli"] = _cli_scenario(work, env, strace, report.get("node_address"))
        report["serve_log_tail"] = _tail(work / "serve.log", 15)
        report["serve_log_has_marker"] = MARKER in (work / "serve.log").read_text(errors="replace")
    finally:
        if serve is not None and serve.poll() is None:
            os.kill(_tracee(serve.pid), signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _kill_traced(serve)
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        subprocess.run([_nomad(), "down", "--json"], env={**os.environ, "NOMAD_DATA_DIR": str(data),
                       "NOMAD_CONFIG": str(work / "nomad.yaml")}, capture_output=True, timeout=120)  # fmt: skip
        _stop_managed(work, data)  # a serve killed past its grace leaves its client behind
        stack.down()
        net.stop()
    report["total_s"] = round(time.monotonic() - t0, 1)
    return report


def _cli_scenario(
    work: Path, env: dict[str, str], strace: str | None, node_address: str | None
) -> dict[str, Any]:
    """After serve: the CLI alone, ``privacy.mode: managed``. ``nomad up`` (under strace) starts
    the managed client itself, launches the node (the slot serve released: the same address)
    and checks its health through the onion network; ``nomad run`` reaches it by address;
    ``nomad down``; the client the CLI started is still running until ``nomad dev down``."""
    from nomad.privacy.managed import ManagedClient

    out: dict[str, Any] = {}
    up_cmd = [_nomad(), "up", "--json", "--timeout", "420"]
    traces = work / "up-trace"
    traces.mkdir()
    if strace:  # -q, not -qq: the tracee's "+++ exited with N +++" line is its exit code
        up_cmd = [strace, "-ff", "-q", "-e", "trace=connect,sendto,sendmsg,execve",
                  "-o", str(traces / "t"), *up_cmd]  # fmt: skip
    up = _run_traced(up_cmd, env, work / "up", timeout=600)
    out["up_rc"] = up.returncode
    out["up_stderr"] = up.stderr[-1500:]
    try:
        doc = json.loads(up.stdout)
        out["up_endpoints"] = [e["url"] for e in doc.get("endpoints", [])]
    except ValueError:
        out["up_endpoints"] = up.stdout[-500:]
    if strace:
        out["up_connects"] = classify(traces)
    data = Path(env["NOMAD_DATA_DIR"])
    import yaml

    cfg_doc = yaml.safe_load(Path(env["NOMAD_CONFIG"]).read_text())
    from nomad.config.schema import PrivacyConfig

    client = ManagedClient(PrivacyConfig.model_validate(cfg_doc["privacy"]), data)
    out["control_port"] = _control_port(data)
    if node_address:
        from nomad.testing.onion import _retry_run

        run = _retry_run(  # a circuit to a fresh hidden service can fail once: retry, as users do
            [_nomad(), "run", "flux_schnell", "--endpoint", f"http://{node_address}",
             "--set", f"prompt={MARKER}", "--set", "steps=2", "--out", str(work / "cli-out"),
             "--timeout", "180", "--json"],
            env, tries=3, timeout=300,
        )  # fmt: skip
        out["run_rc"], out["run_stderr"] = run.returncode, run.stderr[-1500:]
        out["run_outputs"] = sorted(p.name for p in (work / "cli-out").glob("*"))
    down = subprocess.run([_nomad(), "down", "--json"], env=env, capture_output=True, text=True, timeout=180)
    out["down_rc"] = down.returncode
    out["client_left_running"] = client.pid() is not None
    dev_down = subprocess.run([_nomad(), "dev", "down"], env=env, capture_output=True, text=True, timeout=120)
    out["dev_down_rc"] = dev_down.returncode
    out["client_running_after_dev_down"] = client.pid() is not None
    return out


def _run_traced(cmd: list[str], env: dict[str, str], base: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (maybe strace in front); return when *nomad* exits. strace itself would
    wait for every traced descendant, and ``nomad up`` leaves daemons running on purpose (the
    managed client, the node's supervisor): once nomad is gone strace is told to detach."""
    stdout, stderr = base.with_suffix(".out"), base.with_suffix(".err")
    with stdout.open("wb") as so, stderr.open("wb") as se:
        proc = subprocess.Popen(cmd, env=env, stdout=so, stderr=se)
    _wait("strace to start nomad", lambda: _tracee(proc.pid) != proc.pid or proc.poll() is not None
          or "strace" not in cmd[0], timeout=30, interval=0.05)  # fmt: skip
    nomad_pid = _tracee(proc.pid)
    code: int | None = None
    if nomad_pid == proc.pid:
        code = proc.wait(timeout=timeout)
    else:
        _wait("nomad to exit", lambda: not _alive(nomad_pid), timeout=timeout, interval=0.2)
        proc.terminate()  # strace detaches from the daemons and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # the kernel detaches a killed tracer's tracees
            proc.kill()
            proc.wait(timeout=30)
        trace = base.parent / "up-trace" / f"t.{nomad_pid}"
        found = re.findall(r"\+\+\+ exited with (\d+) \+\+\+", trace.read_text(errors="replace"))
        code = int(found[-1]) if found else -1
    return subprocess.CompletedProcess(cmd, code, stdout.read_text(), stderr.read_text())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _kill_traced(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL nomad (not only strace in front of it, which would leave it running)."""
    import contextlib

    with contextlib.suppress(OSError):
        os.kill(_tracee(proc.pid), signal.SIGKILL)
    proc.kill()
    proc.wait(timeout=30)


def _stop_managed(work: Path, data: Path) -> None:
    """Stop the managed client of ``data`` by its pid file, whoever started it."""
    import yaml

    from nomad.config.schema import PrivacyConfig
    from nomad.privacy.managed import ManagedClient

    try:
        doc = yaml.safe_load((work / "nomad.yaml").read_text())
        ManagedClient(PrivacyConfig.model_validate(doc["privacy"]), data).stop()
    except Exception as exc:  # cleanup must not hide the scenario's own error
        print(f"could not stop the managed client: {exc}", file=sys.stderr)


def _tracee(pid: int) -> int:
    """The process strace started (its first child), or ``pid`` itself when not traced."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children and "strace" in Path(f"/proc/{pid}/comm").read_text() else pid


def _control_port(data: Path) -> int | None:
    try:
        return int((data / "privacy/control.port").read_text().strip().rpartition(":")[2])
    except (OSError, ValueError):
        return None


def _text_chunks(png: bytes) -> list[str]:
    """Keywords of the PNG's tEXt/iTXt/zTXt chunks."""
    import struct

    out, pos = [], 8
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind in (b"tEXt", b"iTXt", b"zTXt"):
            body = png[pos + 8 : pos + 8 + length]
            out.append(body.split(b"\0", 1)[0].decode("latin-1"))
        pos += 12 + length
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m nomad.testing.onion_serve",
        description="serve + web through a private onion network. ONLY inside `unshare -n`.",
    )
    p.add_argument("workdir")
    p.add_argument("--binary", default=shutil.which("tor") or "tor")
    p.add_argument("--gencert", default=shutil.which("tor-gencert") or "tor-gencert")
    p.add_argument("--bootstrap-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    if os.environ.get("NOMAD_ONION_NETNS") != "1":
        raise SystemExit("refusing to run outside a network namespace (set by the test via unshare -n)")
    print(json.dumps(scenario(args)))


if __name__ == "__main__":
    main()
