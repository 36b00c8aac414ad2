"""Layer formats the node fetch reads: tar header variants, gzip'd layers written by skopeo."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomad.node import NodeCache, pull_weights
from nomad.node._tarhead import NotAWeightLayer, check_tail, first_file
from nomad.registry import RegistryClient, parse_reference

from .conftest import MiB, Pushed


def _tar(name: str, data: bytes, fmt: int, dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_first_file_finds_data_offset_for_each_tar_format(fmt: int) -> None:
    """PAX, GNU long-name and ustar headers: the span points exactly at the file's bytes."""
    long = (
        "opt/ComfyUI/models/" + "deep/" * 12 + "w.safetensors"
        if fmt != tarfile.USTAR_FORMAT
        else "a/w.bin"
    )
    data = bytes(range(256)) * 40
    raw = _tar(long, data, fmt, dirs=("opt", "opt/ComfyUI"))
    span = first_file(raw)
    assert span is not None and span.path == long and span.size == len(data)
    assert raw[span.offset : span.offset + span.size] == data
    check_tail(raw[span.offset + span.size :])
    assert first_file(raw[:512]) is None  # too short to tell yet: ask for more bytes


def test_two_files_or_no_file_is_not_a_weight_layer() -> None:
    """A second file after the first, or an empty archive, is refused by name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for n in ("a", "b"):
            info = tarfile.TarInfo(n)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"xyz"))
    raw = buf.getvalue()
    span = first_file(raw)
    assert span is not None
    with pytest.raises(NotAWeightLayer, match="more than one"):
        check_tail(raw[span.offset + span.size :])
    with pytest.raises(NotAWeightLayer, match="no regular file"):
        first_file(b"\0" * 1024)


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
def test_gzip_layers_written_by_skopeo_are_inflated_on_the_fly(
    stack: Any, push_weights: Callable[..., Pushed], tmp_path: Path
) -> None:
    """skopeo's copy gzips the weight layer; node pull inflates while streaming and checks the digest."""
    pushed = push_weights({"checkpoints/g.safetensors": 2 * MiB + 9}, seed="gz")
    host = stack.registry_url.split("://", 1)[1]
    src, dst = f"docker://{host}/{pushed.repo}:t1", f"docker://{host}/{pushed.repo}-gz:t1"
    subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst],
        check=True,
        capture_output=True,
    )
    ref = parse_reference(f"{host}/{pushed.repo}-gz:t1")
    with RegistryClient(stack.registry_url) as client:
        raw, _ = client.get_manifest(ref.repository, "t1")
        media = {layer["digest"]: layer["mediaType"] for layer in json.loads(raw)["layers"]}
        res = pull_weights(client, ref, NodeCache(tmp_path / "c"))
    # skopeo gzips the new weight layer; a layer its machine-wide blob-info cache already knows
    # in this registry (the busybox base, pushed by earlier tests) is mounted as it is, unzipped
    (weight,) = res.layers
    assert "gzip" in media[weight.digest]
    (m,) = res.mounts.mounts
    assert m.source.read_bytes() == pushed.files["checkpoints/g.safetensors"]


def test_gzip_fetch_cut_mid_stream_restarts_cleanly(tmp_path: Path) -> None:
    """A gzip'd layer whose first GET dies half-way is re-read from byte 0 with fresh state."""
    import gzip
    import hashlib
    import http.server
    import threading

    from nomad.node import BlobFetch, Target

    data = bytes(range(256)) * 8000
    blob = gzip.compress(_tar("opt/ComfyUI/models/vae/z.bin", data, tarfile.PAX_FORMAT))
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    cuts = [1]

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            a, b = (int(x) for x in self.headers["Range"].split("=")[1].split("-"))
            body = blob[a : b + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {a}-{b}/{len(blob)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if cuts:
                cuts.pop()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    class Src:
        name = "test"

        def locate(self, d: str) -> Target:
            return Target(f"http://127.0.0.1:{srv.server_address[1]}/b", "test blob", via="test")

    try:
        out = BlobFetch(Src(), digest, len(blob), tmp_path / "p", tmp_path / "s",
                        media_type="application/vnd.oci.image.layer.v1.tar+gzip").run()  # fmt: skip
    finally:
        srv.shutdown()
    assert not cuts and out.path.read_bytes() == data and out.bytes_moved > len(blob)


def test_expired_url_is_located_again_mid_fetch(tmp_path: Path) -> None:
    """A 403 on a range (expired presigned URL / token) makes the fetch ask its source for a new URL."""
    import hashlib
    import http.server
    import threading

    from nomad.node import BlobFetch, Target

    data = bytes(range(256)) * 12000
    blob = _tar("opt/ComfyUI/models/vae/e.bin", data, tarfile.PAX_FORMAT)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    served = [0]

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            served[0] += 1
            if self.path.endswith("v=1") and served[0] > 1:  # the first URL expires after one GET
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            a, b = (int(x) for x in self.headers["Range"].split("=")[1].split("-"))
            body = blob[a : b + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {a}-{b}/{len(blob)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    located: list[int] = []

    class Src:
        name = "test"

        def locate(self, d: str) -> Target:
            located.append(1)
            url = f"http://127.0.0.1:{srv.server_address[1]}/b?v={len(located)}"
            return Target(url, "test blob", via="test")

    try:
        out = BlobFetch(Src(), digest, len(blob), tmp_path / "p", tmp_path / "s", streams=1,
                        chunk=1 << 20).run()  # fmt: skip
    finally:
        srv.shutdown()
    assert len(located) == 2 and out.path.read_bytes() == data
