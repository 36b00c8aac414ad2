"""`nomad serve` with privacy on: every connect towards a cluster goes through the proxy, and a
proxy that accepts and never answers fails a wake, a health check or a run at its deadline.

Real: ``nomad.serve.server.serve`` (first test) or the autoscaler loop, BackendOps, the policy,
the WorkerPool with ComfyRunner (second); the SQLite queue and ledger; the privacy transports;
Debian's ``microsocks`` as the working proxy. Doubles: FakeBackend (launches nothing, hands out
the endpoint it is given), FakeComfy (the ComfyUI protocol double), and a silent SOCKS server
(a TCP listener that accepts and never answers: a wedged or still-bootstrapping anon/tor).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad import privacy
from nomad.backends.base import LaunchSpec
from nomad.backends.local.process import free_port
from nomad.config import load_text
from nomad.config.schema import NomadConfig
from nomad.launch import health_client
from nomad.privacy import onion
from nomad.queue import JobStatus, open_queue
from nomad.queue._sql import SqlQueue
from nomad.queue.ledger import ClusterLedger
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.outputs import MemoryOutputs
from nomad.serve.policy import Phase, Policy, PolicyConfig
from nomad.serve.runner import ComfyRunner
from nomad.serve.server import ServeOptions, serve
from nomad.serve.worker import PoolConfig, WorkerPool
from nomad.testing.backend import FakeBackend
from nomad.testing.comfy import FakeComfy
from nomad.testing.wait import eventually
from tests.serve.test_worker import GRAPH, until

ONION = onion.encode(bytes(32), "onion")


class SilentSocks:
    """Accepts TCP connections on loopback and never answers (not even the SOCKS greeting)."""

    def __init__(self, port: int = 0) -> None:
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a proxy's old TIME_WAITs
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        self.url = f"socks5h://127.0.0.1:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.srv.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self.accepted += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.srv.close()


class Net:
    """What this process asks of the network: names resolved, and AF_INET(6) connects."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        self.connects: list[tuple[str, int]] = []
        resolve, connect = socket.getaddrinfo, socket.socket.connect

        def getaddrinfo(host: Any, *a: Any, **kw: Any) -> Any:
            self.names.append(str(host))
            return resolve(host, *a, **kw)

        def recorded(sock: socket.socket, address: Any) -> Any:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                self.connects.append((str(address[0]), int(address[1])))
            return connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", recorded)

    def ports(self) -> set[int]:
        return {port for _, port in self.connects}


@pytest.fixture(autouse=True)
def _deadline_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve adopts privacy.connect_timeout process-wide: later tests get the default back."""
    monkeypatch.setattr(privacy, "_deadline", privacy.connect_deadline())


@pytest.fixture
def silent() -> Iterator[SilentSocks]:
    proxy = SilentSocks()
    yield proxy
    proxy.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[SqlQueue]:
    q = open_queue(None, tmp_path, lease_seconds=30)
    assert isinstance(q, SqlQueue)
    yield q
    q.close()


def pushed_image(data_dir: Path) -> None:
    """The record `nomad push` leaves, so serve's launch spec has an image to name."""
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    digest = "sha256:" + "ab" * 32
    (data_dir / "images" / "last_push.json").write_text(
        json.dumps({"ref": f"127.0.0.1:5000/demo@{digest}", "digest": digest})
    )


async def test_wake_through_a_silent_proxy_fails_at_its_deadline_torn_down_job_kept(
    tmp_path: Path, queue: SqlQueue, silent: SilentSocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve() wakes a cluster at an .onion endpoint through a silent proxy: the wake fails with
    the proxy's deadline (not the 600 s health timeout), the cluster is torn down and its ledger
    row closed, the job waits queued saying why, and nothing resolves or dials the onion name."""
    cfg = load_text(
        "project: demo\ninfra: {health_timeout_seconds: 600}\n"
        f"privacy: {{enabled: true, proxy: '{silent.url}', connect_timeout: 1}}\n"
    )
    pushed_image(tmp_path)
    fake = FakeBackend(endpoints=[f"http://{ONION}"])
    net = Net(monkeypatch)
    job = queue.enqueue("flux_schnell", {"prompt": "x"})
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(cfg, tmp_path, options=ServeOptions(interval=0.1, grace_seconds=1.0),
              queue=queue, backend=fake, store=MemoryOutputs(), stop=stop)
    )  # fmt: skip
    try:
        detail = await until("the failed wake to reach the job", lambda: failed_wake(queue, job.id))
    finally:
        stop.set()
        await task
    assert queue.get(job.id).status is JobStatus.QUEUED  # waits for the next try (backoff)
    assert "through the proxy" in detail and "no answer within 1 s" in detail
    assert "did not answer /system_stats" not in detail  # the proxy deadline ended it
    book = ClusterLedger(queue, "demo")
    (name,) = {n for m, n in fake.calls if m == "launch"}
    row = book.last(name)
    assert row is not None and "launch failed" in (row.detail or "")
    assert "no answer within 1 s" in (row.detail or "")
    assert ("teardown", name) in fake.calls and fake.clusters == {} and book.open_rows() == []
    assert silent.accepted >= 1  # the health check did go to the proxy…
    assert not [n for n in net.names if ONION in n]  # …and never to DNS
    assert net.ports() == {silent.port}  # no direct connect anywhere


def failed_wake(queue: SqlQueue, job_id: str) -> str | None:
    """The job's detail once it says the wake failed."""
    detail = queue.get(job_id).detail or ""
    return detail if "GPU launch failed" in detail else None


def microsocks(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("microsocks")
    if binary is None:
        pytest.skip("microsocks not installed (apt-get install microsocks)")
    proc = subprocess.Popen([binary, "-i", "127.0.0.1", "-p", str(port)])
    eventually(lambda: _accepts(port), timeout=10, what=f"microsocks on {port}")
    return proc


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_endpoint_healthy_through_a_proxy_that_goes_silent_is_lost_not_a_hung_worker(
    tmp_path: Path, queue: SqlQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job runs through microsocks and serve's status check passes through it; then the proxy
    goes silent: the check fails at the deadline twice in a row and the cluster is lost (torn
    down, workers stopped), the job that could not run waits queued, and no connect of this
    process ever went to ComfyUI directly."""
    port = free_port()
    proxy = microsocks(port)
    comfy = FakeComfy.start_in_thread()
    silent: SilentSocks | None = None
    cfg = NomadConfig.model_validate(
        {"privacy": {"enabled": True, "proxy": f"socks5h://127.0.0.1:{port}", "connect_timeout": 1}}
    )
    http = health_client(cfg)
    assert http is not None
    net = Net(monkeypatch)
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(GRAPH))
    clock, book, store = Clock(), ClusterLedger(queue, "demo"), MemoryOutputs()
    fake = FakeBackend(endpoints=[comfy.url])
    ops = BackendOps(
        fake, LaunchSpec(cluster_name="x", image_ref=""), None, health_timeout_s=30.0,
        clock=clock, ledger=book, sleep=lambda _s: None, health_client=http,
    )  # fmt: skip
    pool = WorkerPool(
        queue, ComfyRunner(store, proxy=cfg.privacy.proxy), store,
        config=PoolConfig(lease_seconds=30, idle_poll_seconds=0.1, backoff_seconds=0.05,
                          max_backoff_seconds=0.2),
    )  # fmt: skip
    policy = Policy(PolicyConfig(idle_seconds=600.0, drain_seconds=5.0, base_name="demo-serve"))
    scaler = Autoscaler(queue, ops, policy, pool, clock=clock, status_every=10.0, ledger=book)
    try:
        first = queue.enqueue(str(graph), {})
        await scaler.step()
        await scaler.settle()
        await until("the first job ran", lambda: queue.get(first.id).status.finished)
        assert queue.get(first.id).status is JobStatus.SUCCEEDED
        clock.now += 10
        await scaler.step()  # the periodic check, through the working proxy
        assert policy.clusters["demo-serve"].phase is Phase.READY

        proxy.terminate()  # the proxy restarts wedged: it accepts and never answers
        proxy.wait(timeout=10)
        silent = SilentSocks(port)
        second = queue.enqueue(str(graph), {})
        await until("a worker to try the second job", lambda: silent.accepted > 0)
        for _ in range(2):  # a silent proxy counts as a timeout: twice in a row
            clock.now += 10
            await scaler.step()
        await scaler.settle()  # the re-wake for the waiting job fails at the proxy too
        row = book.last("demo-serve")
        assert row is not None and "stopped answering" in (row.detail or "")
        assert "through the proxy" in (row.detail or "") and "no answer within 1 s" in (
            row.detail or ""
        )
        assert ("teardown", "demo-serve") in fake.calls and "demo-serve" not in fake.clusters
        assert pool.workers == 0 and pool.busy == 0  # no worker left hanging on the endpoint
        assert queue.get(second.id).status in (JobStatus.QUEUED, JobStatus.WAKING)
        assert book.open_rows() == []
    finally:
        await pool.shutdown(1.0)
        http.close()
        comfy.stop()
        if proxy.poll() is None:
            proxy.terminate()
            proxy.wait(timeout=10)
        if silent is not None:
            silent.close()
    comfy_port = int(comfy.url.rsplit(":", 1)[1])
    assert comfy_port not in net.ports()  # everything towards ComfyUI went through the proxy
    assert net.ports() == {port}


async def test_worker_health_probe_through_a_silent_proxy_is_a_no_not_a_crash(
    silent: SilentSocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyRunner.healthy through a silent proxy answers False at the deadline (it used to raise
    PrivacyError, which ended the worker's loop with its leased job still held)."""
    monkeypatch.setattr(privacy, "_deadline", 0.5)
    runner = ComfyRunner(None, proxy=silent.url)
    assert await runner.healthy(f"http://{ONION}") is False


async def test_object_info_through_a_silent_proxy_fails_the_run_and_is_asked_again(
    silent: SilentSocks, queue: SqlQueue, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A run whose /object_info read meets a silent proxy fails with PrivacyError, and the wake's
    schema is not recorded as missing (jobs would otherwise run unchecked for the whole wake)."""
    from nomad.errors import PrivacyError

    monkeypatch.setattr(privacy, "_deadline", 0.5)
    graph = tmp_path / "g.json"
    graph.write_text(json.dumps(GRAPH))
    job = queue.enqueue(str(graph), {})
    runner = ComfyRunner(None, proxy=silent.url)
    with pytest.raises(PrivacyError, match=r"through the proxy.*no answer within 0\.5 s"):
        await runner.run(job, f"http://{ONION}", lambda _f: None)
    assert f"http://{ONION}" not in runner._schemas  # asked again by the next run


def test_a_refused_proxy_port_is_the_proxy_restarting_not_a_lost_node(queue: SqlQueue) -> None:
    """With privacy on every connect goes to the SOCKS port, so a refused connect is the proxy
    (a managed client between two lives), not the node: one refusal keeps the cluster, the
    second in a row loses it, naming the proxy. Before, the first refusal tore down a healthy
    paid node."""
    port = free_port()  # nothing listens there
    cfg = NomadConfig.model_validate(
        {"privacy": {"enabled": True, "proxy": f"socks5h://127.0.0.1:{port}", "connect_timeout": 1}}
    )
    http = health_client(cfg)
    assert http is not None
    fake = FakeBackend(endpoints=["http://" + onion.encode(bytes(32), "onion")])
    ops = BackendOps(
        fake, LaunchSpec(cluster_name="x", image_ref=""), None, health_timeout_s=30.0,
        clock=Clock(), ledger=ClusterLedger(queue, "demo"), sleep=lambda _s: None,
        health_client=http,
    )  # fmt: skip
    try:
        fake.launch(LaunchSpec(cluster_name="c", image_ref=""))
        assert ops.status("c").state.value == "up"
        second = ops.status("c")
        assert second.state.value == "failed"
        assert "twice in a row, through the proxy" in (second.detail or "")
    finally:
        http.close()
