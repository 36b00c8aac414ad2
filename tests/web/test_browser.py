"""The page in a real headless Chromium: type a prompt, click Generate, see the image.

Real pieces: Debian's ``chromium`` driven by ``chromedriver`` over the W3C
WebDriver HTTP protocol (httpx, no Selenium, nothing downloaded), the web
door's aiohttp server on loopback, the SQLite queue, the embedded S3. The
worker is played by the test (lease → store a real PNG → complete), because
what is under test is the page, not ComfyUI. Skipped only when chromium or
chromedriver is not installed (CI installs both: .ci/run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import struct
import subprocess
import tempfile
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from nomad.config.schema import WebConfig
from nomad.queue import open_queue
from nomad.queue.base import JobQueue
from nomad.testing.wait import eventually, eventually_async
from nomad.web.app import WebDeps, make_app
from nomad.workflows import load_workflow

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "browser-test-token"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C element reference key
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1000,900",
]  # fmt: skip


def red_png(size: int = 32) -> bytes:
    """A real square RGB PNG, written by hand (naturalWidth == size proves the browser decoded it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xc8\x1e\x1e" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    q = open_queue(None, tmp_path)
    yield q
    q.close()


@pytest.fixture()
def chromedriver() -> Iterator[str]:
    """A chromedriver process on a free loopback port; yields its URL."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "needs Debian chromium + chromium-driver (apt-get install chromium chromium-driver)"
        )
    port = free_port()
    proc = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _ready(url), timeout=20, what="chromedriver to answer /status")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _ready(url: str) -> bool:
    try:
        return bool(httpx.get(f"{url}/status", timeout=2).json()["value"]["ready"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


class Browser:
    """The few WebDriver commands the test needs (https://www.w3.org/TR/webdriver2/)."""

    def __init__(self, client: httpx.AsyncClient, session: str) -> None:
        self.http, self.session = client, session

    async def cmd(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = await self.http.request(method, f"/session/{self.session}{path}", json=body)
        value = r.json()["value"]
        assert r.status_code == 200, value
        return value

    async def find(self, css: str) -> str:
        found = await self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return str(found[ELEMENT])

    async def js(self, script: str) -> Any:
        return await self.cmd("POST", "/execute/sync", {"script": script, "args": []})


@contextlib.asynccontextmanager
async def browser(driver: str) -> AsyncIterator[Browser]:
    profile = tempfile.mkdtemp(prefix="nomad-chromium-")
    caps = {
        "capabilities": {
            "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [*FLAGS, f"--user-data-dir={profile}"],
                },
            }
        }
    }
    async with httpx.AsyncClient(base_url=driver, timeout=60, trust_env=False) as client:
        r = await client.post("/session", json=caps)
        assert r.status_code == 200, r.text
        session = r.json()["value"]["sessionId"]
        try:
            yield Browser(client, session)
        finally:
            await client.delete(f"/session/{session}")
            shutil.rmtree(profile, ignore_errors=True)


async def play_worker(queue: JobQueue, storage: Any, png: bytes, stop: asyncio.Event) -> list[str]:
    """Lease each job, report progress, store the PNG, complete it; returns the job ids."""
    done: list[str] = []
    while not stop.is_set():
        job = await asyncio.to_thread(queue.lease, "browser-test-worker")
        if job is None:  # block until the queue says a job may be there (bounded), no fixed sleep
            await asyncio.to_thread(queue.wait_for_work, 0.5)
            continue
        assert job.lease_token is not None
        await asyncio.to_thread(queue.heartbeat, job.id, job.lease_token, progress=0.5)
        key = f"outputs/{job.id}/0.png"
        await asyncio.to_thread(storage.put_bytes, key, png, "image/png")
        await asyncio.to_thread(queue.complete, job.id, job.lease_token, outputs=[key])
        done.append(job.id)
    return done


async def test_click_generate_and_see_the_image(
    chromedriver: str, queue: JobQueue, storage: Any
) -> None:
    """Headless Chromium: the page lists workflows, a click submits, the image appears (decoded)."""
    png = red_png()
    deps = WebDeps(
        config=WebConfig(),
        queue=queue,
        storage=storage,
        load_workflow=load_workflow,
        workflow_names=["flux_schnell"],
        tokens=[TOKEN],
    )
    stop = asyncio.Event()
    async with TestServer(make_app(deps), host="127.0.0.1") as server:
        worker = asyncio.create_task(play_worker(queue, storage, png, stop))
        try:
            async with browser(chromedriver) as b:
                await b.cmd("POST", "/url", {"url": str(server.make_url("/"))})
                await eventually_async(
                    lambda: b.js("return document.querySelectorAll('#workflow option').length"),
                    timeout=20, what="the workflow list",
                )  # fmt: skip
                for css, text in (("#token", TOKEN), ("#prompt", "a red square")):
                    el = await b.find(css)
                    await b.cmd("POST", f"/element/{el}/value", {"text": text})
                await b.cmd("POST", f"/element/{await b.find('#go')}/click", {})
                width = await eventually_async(
                    lambda: b.js(
                        "const i = document.querySelector('#result img');"
                        "return i && i.complete ? i.naturalWidth : 0;"
                    ),
                    timeout=30,
                    what="the image to render",
                )
                status = await b.js("return document.querySelector('#status').textContent")
        finally:
            stop.set()
            done = await asyncio.wait_for(worker, 10)
    assert width == 32  # the browser decoded our PNG
    assert status.startswith("succeeded")
    [job] = queue.list()
    assert done == [job.id] and job.params["prompt"] == "a red square"
