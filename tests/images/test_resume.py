"""Interrupted pushes on a real stack: resume mid-blob across stack restarts, safe upload purge."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomad.dev import _procs
from nomad.dev.stack import Stack
from nomad.images import BuildInputs, ModelCache, ModelSpec, build_image
from nomad.registry import BlobUploadError, RegistryClient, push_image
from nomad.registry._purge import purge_uploads
from nomad.registry._upload import DRIVER_CHUNK
from nomad.storage import Storage

MiB = 1024 * 1024


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of this test's own (it gets restarted), stopped afterwards."""
    st = Stack(tmp_path / "stackdata", die_with_parent=True)
    try:
        st.up()
        yield st
    finally:
        st.down()


class CutAfter(httpx.BaseTransport):
    """The REAL transport, except the client 'dies' once ``limit`` PATCH bytes have gone out.

    ``before_cut`` runs first (e.g. kill the registry, so the cut is a crash of the stack)."""

    def __init__(self, limit: int, before_cut: Callable[[], None] | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.limit, self.sent = limit, 0
        self.before_cut = before_cut

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            request.stream = _Counted(request.stream, self)
        return self.inner.handle_request(request)


class _Counted(httpx.SyncByteStream):
    def __init__(self, inner: Any, owner: CutAfter) -> None:
        self.inner, self.owner = inner, owner

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if self.owner.sent + len(chunk) > self.owner.limit:
                if self.owner.before_cut:
                    self.owner.before_cut()
                raise httpx.WriteError("push killed by the test")
            self.owner.sent += len(chunk)
            yield chunk


def _build_one(tmp_path: Path, size: int) -> Path:
    w = tmp_path / "big.safetensors"
    with open(w, "wb") as f:
        f.write(os.urandom(size))
    inputs = BuildInputs(
        base="busybox", tag="t1", models=[ModelSpec("checkpoints/big.safetensors", str(w))],
        files={}, env={}, labels={}, models_root="/opt/ComfyUI/models", port=8188,
        config_dir=tmp_path,
    )  # fmt: skip
    build_image(inputs, tmp_path / "out", ModelCache(tmp_path / "cache"))
    return tmp_path / "out"


def test_killed_pushes_resume_mid_blob_across_stack_restarts(
    own_stack: Stack, tmp_path: Path
) -> None:
    """Three pushes cut mid-blob by a crash of the stack (restarted after each): the registry
    stays healthy and each retry continues at the last chunk it acknowledged; the final one
    sends only the tail."""
    size = 3 * DRIVER_CHUNK + 5 * MiB  # four PATCH chunks
    out = _build_one(tmp_path, size)
    data = tmp_path / "data"
    sent_total = 0

    def crash_registry() -> None:
        # Killed (and gone) before the client lets go of the PATCH: a registry that sees the
        # client leave flushes the bytes it got to S3, past the acknowledged offset, and the
        # upload cannot resume (BLOB_UPLOAD_INVALID; docs/images.md). Letting go first raced
        # that flush against down(): a flaky test.
        pid = own_stack.status().component("registry").pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert _procs.wait_gone(pid, str(own_stack.root), 10)

    for attempt in range(3):
        info = own_stack.info()
        assert info is not None
        # one whole chunk, then 4 MiB into the next
        cut = CutAfter(DRIVER_CHUNK + 4 * MiB, before_cut=crash_registry)
        at = (attempt + 1) * DRIVER_CHUNK
        with pytest.raises(BlobUploadError, match=f"at byte {at} of the blob") as err:
            push_image(
                url=info.registry_url, repository="it/resume", tag="t1", layout_dir=out,
                data_dir=data, insecure=True, transport=cut, parallel=1,
            )  # fmt: skip
        assert f"resumes at byte {at}" in (err.value.hint or "")
        sent_total += cut.sent
        own_stack.down()
        own_stack.up()
        assert own_stack.status().running
    info = own_stack.info()
    assert info is not None
    res = push_image(
        url=info.registry_url, repository="it/resume", tag="t1", layout_dir=out,
        data_dir=data, insecure=True,
    )  # fmt: skip
    big = max(res.blobs, key=lambda b: b.size)
    assert big.size > size and big.bytes_sent == big.size - 3 * DRIVER_CHUNK
    assert sent_total + big.bytes_sent < big.size + 3 * 5 * MiB  # only the cut tails resent
    assert json.loads((data / "registry" / "uploads.json").read_text()) == {}
    with RegistryClient(info.registry_url) as c:
        assert c.download_blob("it/resume", big.digest, tmp_path / "back") == big.size
    assert own_stack.status().running


def test_purge_removes_abandoned_uploads_and_the_registry_stays_up(
    own_stack: Stack, tmp_path: Path
) -> None:
    """Stale uploads (and a '/'-ending marker key that crashes distribution's purger) are removed
    by nomad's purge; a young upload is kept; the registry keeps answering."""
    info = own_stack.info()
    assert info is not None
    cfg = json.loads(own_stack.registry_config_path.read_text())
    assert cfg["storage"]["maintenance"]["uploadpurging"]["enabled"] is False
    with RegistryClient(info.registry_url) as c:
        loc = c.request("POST", "/v2/it/purge/blobs/uploads/", repo="it/purge", what="start")
        assert loc.status_code == 202
    store = Storage(info.s3_settings(info.registry_bucket))
    uploads = [
        k for k in store.list("docker/registry/v2/repositories/it/purge/") if "_uploads/" in k
    ]
    assert uploads
    upload_dir = (
        uploads[0].split("/_uploads/")[0]
        + "/_uploads/"
        + uploads[0].split("/_uploads/")[1].split("/")[0]
    )
    store.put_bytes(f"{upload_dir}/hashstates/", b"")  # the marker key SeaweedFS lists after a kill
    kept = purge_uploads(store, older_than=3600)
    assert kept.removed == [] and kept.kept == 1
    gone = purge_uploads(store, older_than=0)
    assert gone.removed == [upload_dir] and gone.keys_deleted >= 2
    assert not [k for k in store.list(upload_dir + "/")]
    assert own_stack.status().running


def test_status_names_a_crashed_registry(own_stack: Stack) -> None:
    """A registry that died is reported down with its last panic line and the log's path."""
    import signal

    pid = own_stack.status().component("registry").pid
    assert pid
    log = own_stack.root / "logs" / "registry.log"
    with open(log, "a") as f:
        f.write("panic: runtime error: index out of range [1] with length 1\n")
    os.kill(pid, signal.SIGKILL)
    from nomad.testing.wait import eventually

    eventually(lambda: not own_stack.status().component("registry").alive, timeout=10,
               interval=0.1, what="the registry to die")  # fmt: skip
    reg = own_stack.status().component("registry")
    assert not reg.healthy and "index out of range" in (reg.detail or "")
    own_stack.up()
    assert own_stack.status().running
