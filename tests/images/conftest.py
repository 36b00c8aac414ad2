"""Fixtures for the images area: generated weights, a Range-capable HTTP server, configs."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nomad.config import load_text
from nomad.config.schema import NomadConfig

SIZES = {
    "unet.safetensors": 3 * 1024 * 1024 + 17,
    "clip.safetensors": 700 * 1024 + 3,
    "vae.safetensors": 4099,
}
DESTS = {
    "unet.safetensors": "diffusion_models/unet.safetensors",
    "clip.safetensors": "text_encoders/clip.safetensors",
    "vae.safetensors": "vae/vae.safetensors",
}


def stand_in(name: str, size: int) -> bytes:
    """Deterministic pseudo-random bytes (not a real model)."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}/{i}".encode()).digest() * 64
        i += 1
    return bytes(out[:size])


@pytest.fixture
def weights(tmp_path: Path) -> dict[str, Path]:
    """Three stand-in weight files of different sizes under tmp_path/weights."""
    d = tmp_path / "weights"
    d.mkdir()
    out = {}
    for name, size in SIZES.items():
        (d / name).write_bytes(stand_in(name, size))
        out[name] = d / name
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path: Path, weights: dict[str, Path]) -> Callable[..., tuple[NomadConfig, Path]]:
    """Write a project dir (nomad.yaml, workflows/) and return (config, config_dir)."""

    def make(*, workflow_text: str = '{"1": {}}', extra: str = "") -> tuple[NomadConfig, Path]:
        wf = tmp_path / "workflows"
        wf.mkdir(exist_ok=True)
        (wf / "demo.json").write_text(workflow_text)
        lines = ["project: imgtest", "image:", "  base: busybox", "  tag: t1", "models:", "  test:"]
        for name, path in weights.items():
            lines += [
                f"    - dest: {DESTS[name]}",
                f"      source: weights/{name}",
                f"      sha256: {sha(path)}",
                f"      size: {path.stat().st_size}",
            ]
        text = "\n".join(lines) + "\n" + extra
        (tmp_path / "nomad.yaml").write_text(text)
        return load_text(text), tmp_path

    return make


@dataclass
class HttpFiles:
    """A loopback HTTP server that serves ``files`` with Range support and logs requests."""

    url: str
    files: dict[str, bytes]
    requests: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    truncate_first: set[str] = field(default_factory=set)


@pytest.fixture
def http_files() -> Iterator[HttpFiles]:
    """Serve in-memory files on 127.0.0.1:<free port>, honouring Range; stopped after the test."""
    state = HttpFiles(url="", files={})

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.requests.append((self.path, rng, self.headers.get("Authorization")))
            data = state.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            body = data[start:]
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in state.truncate_first:
                state.truncate_first.discard(self.path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)


def write_nonroot_base(out: Path, tag: str = "t") -> None:
    """A tiny OCI base whose /opt/ComfyUI (and models/) belong to uid/gid 1000, mode 0775,
    like a non-root ComfyUI runtime image. Written with tarfile, not nomad's layer writer."""
    import io
    import json
    import tarfile

    def tar(entries: list[tuple[str, int, int, bytes | None]]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name, uid, mode, data in entries:
                ti = tarfile.TarInfo(name)
                ti.uid = ti.gid = uid
                ti.mode, ti.mtime = mode, 0
                if data is None:
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                else:
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": f"sha256:{h}", "size": len(data)}

    layer = put(
        tar(
            [
                ("opt", 0, 0o755, None),
                ("opt/ComfyUI", 1000, 0o775, None),
                ("opt/ComfyUI/main.py", 1000, 0o644, b"print('comfy')\n"),
                ("opt/ComfyUI/models", 1000, 0o775, None),
                ("opt/ComfyUI/models/vae", 1000, 0o775, None),
            ]
        )
    )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": "1000:1000", "WorkingDir": "/opt/ComfyUI"},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    }
    cfg = put(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }
    man = put(json.dumps(manifest).encode())
    (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **man,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (out / "index.json").write_text(json.dumps(index))
