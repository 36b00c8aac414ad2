"""Fixtures for the node area: images built by nomad and pushed to the real stack, a TCP gate."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nomad.config import load_text
from nomad.images import ModelCache, build_image, inputs_from_config
from nomad.registry import push_image

MiB = 1024 * 1024


def stand_in(name: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes (not a real model)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}/{i}".encode()).digest() * 64
        i += 1
    return bytes(out[:size])


@dataclass
class Pushed:
    """An image in the stack's registry: its reference and the weight files it carries."""

    ref: str  # host/repo@sha256:…
    repo: str
    files: dict[str, bytes]  # dest -> content
    layers: list[dict[str, Any]]


@pytest.fixture
def push_weights(stack: Any, tmp_path: Path) -> Callable[..., Pushed]:
    """Build (nomad build, busybox base) and push an image with the given weights; returns it."""

    def make(sizes: dict[str, int], *, repo: str | None = None, seed: str = "") -> Pushed:
        d = tmp_path / f"p-{uuid.uuid4().hex[:8]}"
        (d / "w").mkdir(parents=True)
        lines = ["project: nodetest", "image:", "  base: busybox", "  tag: t1", "models:", "  m:"]
        files = {}
        for dest, size in sizes.items():
            data = stand_in(seed + dest, size)
            src = d / "w" / dest.replace("/", "_")
            src.write_bytes(data)
            files[dest] = data
            lines += [
                f"    - dest: {dest}",
                f"      source: {src}",
                f"      sha256: {hashlib.sha256(data).hexdigest()}",
                f"      size: {size}",
            ]
        cfg = load_text("\n".join(lines) + "\n")
        built = build_image(inputs_from_config(cfg, d, None), d / "oci", ModelCache(d / "mc"))
        name = repo or f"node/{uuid.uuid4().hex[:10]}"
        res = push_image(
            url=stack.registry_url,
            repository=name,
            tag="t1",
            layout_dir=d / "oci",
            data_dir=d / "data",
            insecure=True,
        )
        return Pushed(res.ref, name, files, built.layers)

    return make


@dataclass
class Gate:
    """A loopback TCP relay to ``upstream`` that forwards at most ``budget`` bytes back, then holds.

    Counts every byte sent from upstream to the client: the honest way to say
    how many bytes a client pulled. ``budget=None`` forwards everything.
    """

    upstream: tuple[str, int]
    budget: int | None = None
    port: int = 0
    down_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _socks: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stalled(self) -> bool:
        return self.budget is not None and self.down_bytes >= self.budget

    def _take(self, n: int) -> int:
        with self._lock:
            if self.budget is None:
                self.down_bytes += n
                return n
            allowed = max(0, min(n, self.budget - self.down_bytes))
            self.down_bytes += allowed
            return allowed

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    n = self._take(len(data))
                    dst.sendall(data[:n])
                    if n < len(data):
                        self._stop.wait()  # hold the connection open, send nothing more
                        return
                else:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve(self) -> None:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(64)
        lsock.settimeout(0.2)
        self.port = lsock.getsockname()[1]
        self._socks.append(lsock)

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    client, _ = lsock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                up = socket.create_connection(self.upstream)
                self._socks += [client, up]
                threading.Thread(target=self._pipe, args=(client, up, False), daemon=True).start()
                threading.Thread(target=self._pipe, args=(up, client, True), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture(scope="session")
def registries(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, str]]:
    """Two more real registries on the stack's bucket: {redirect on: url, redirect off: url}.

    Same bucket, same repositories as the stack's registry, so an image pushed
    there is served by both; the tests choose the byte path explicitly instead
    of depending on the embedded stack's default.
    """
    from nomad.dev.stack import find_registry
    from nomad.registry._config import storage_section
    from nomad.testing.wait import eventually

    creds = json.loads((stack.data_dir / "stack" / "credentials.json").read_text())
    procs, urls = [], {}
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for redirect in (True, False):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": creds["registry_http_secret"]},
            "storage": storage_section(
                {
                    "regionendpoint": stack.s3_endpoint, "region": stack.region,
                    "bucket": stack.registry_bucket, "accesskey": creds["access_key"],
                    "secretkey": creds["secret_key"], "secure": False, "v4auth": True,
                },
                redirect=redirect,
            ),
        }  # fmt: skip
        d = tmp_path_factory.mktemp(f"registry-redirect-{redirect}")
        (d / "cfg.yml").write_text(json.dumps(cfg))
        log = open(d / "log", "wb")  # noqa: SIM115 - lives as long as the process
        procs.append((subprocess.Popen([find_registry(), "serve", str(d / "cfg.yml")], env=env,
                                       stdout=log, stderr=log), log))  # fmt: skip
        urls[redirect] = f"http://127.0.0.1:{port}"
    try:
        for url in urls.values():
            eventually(lambda url=url: _answers(url + "/v2/"), timeout=30, what=f"{url}/v2/")
        yield urls
    finally:
        for p, log in procs:
            p.terminate()
            p.wait(timeout=10)
            log.close()


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def gate(registries: dict[bool, str]) -> Iterator[Callable[..., Gate]]:
    """Start :class:`Gate` relays in front of a registry that serves blob bytes itself."""
    made: list[Gate] = []
    host, port = registries[False].split("://", 1)[1].split(":")

    def make(budget: int | None = None) -> Gate:
        g = Gate((host, int(port)), budget)
        g.serve()
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()
