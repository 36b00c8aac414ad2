"""Failures say which component failed and what to do: full disk (exit 4), S3 dying mid-push."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomad.config.schema import NomadConfig
from nomad.dev.stack import Stack
from nomad.errors import RegistryError
from nomad.registry import push_image
from nomad.testing.cli import run_nomad

Project = Callable[..., tuple[NomadConfig, Path]]


def test_full_disk_during_build_is_one_clear_line_exit_4(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing a layer (fault-injected write): exit 4, 'disk full' + free space +
    what to delete, no traceback, no half-written blob, no nomad.lock written."""
    from nomad.images import _tar

    _, cdir = project()
    real = _tar._HashingWriter.write

    def full(self: Any, data: Any) -> None:
        if self.size > 256 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data)

    monkeypatch.setattr(_tar._HashingWriter, "write", full)
    monkeypatch.setenv("NOMAD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "layout"
    code, _, err = run_nomad(
        tmp_path / "data", "-c", str(cdir / "nomad.yaml"), "build", "--out", str(out)
    )
    assert code == 4
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert lines[0].startswith(f"error: disk full while building {out}: ")
    assert "GB free" in lines[0] and "model cache" in lines[1] and "NOMAD_CACHE_DIR" in lines[1]
    assert not [p for p in (out / "blobs" / "sha256").iterdir() if p.name.startswith(".")]
    assert not (cdir / "nomad.lock").exists()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    st = Stack(tmp_path / "stackdata", die_with_parent=True)
    try:
        st.up()
        yield st
    finally:
        st.down()


class KillS3OnFirstPatch(httpx.BaseTransport):
    """The real transport; when the first PATCH starts, SeaweedFS (S3) is SIGKILLed first."""

    def __init__(self, stack: Stack) -> None:
        self.inner, self.stack, self.done = httpx.HTTPTransport(), stack, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and not self.done:
            self.done = True
            pid = self.stack.status().component("s3").pid
            assert pid
            os.kill(pid, signal.SIGKILL)
            from nomad.testing.wait import eventually

            eventually(lambda: not self.stack.status().component("s3").alive, timeout=10,
                       interval=0.05, what="S3 to die")  # fmt: skip
        return self.inner.handle_request(request)


def test_s3_killed_mid_push_names_s3(own_stack: Stack, project: Project, tmp_path: Path) -> None:
    """S3 dies while a blob is being uploaded through the registry: the error names the registry,
    the blob, says storage (S3) failed and how to go on — not a bare 'HTTP 500 (UNKNOWN)'."""
    cfg, cdir = project()
    from nomad.images import ModelCache, build_image, inputs_from_config

    build_image(inputs_from_config(cfg, cdir, cdir / "workflows"), tmp_path / "out",
                ModelCache(tmp_path / "cache"))  # fmt: skip
    info = own_stack.info()
    assert info is not None
    with pytest.raises(RegistryError) as err:
        push_image(
            url=info.registry_url, repository="it/s3dies", tag="t1", layout_dir=tmp_path / "out",
            data_dir=tmp_path / "data", insecure=True, transport=KillS3OnFirstPatch(own_stack),
            parallel=1,
        )  # fmt: skip
    text = f"{err.value.message} {err.value.hint}"
    assert "S3" in err.value.message and "sha256:" in err.value.message
    assert "run the same command again" in text
