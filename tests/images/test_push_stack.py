"""Push to the real embedded stack (SeaweedFS + distribution), checked with skopeo and umoci."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nomad.config.schema import NomadConfig
from nomad.errors import BuildError
from nomad.images import ModelCache, OciLayout, build_image, inputs_from_config, last_pushed
from nomad.registry import (
    BlobUploadError,
    RegistryAuthError,
    RegistryClient,
    RegistryUnreachable,
    push_image,
)
from nomad.testing.wait import eventually

from .conftest import DESTS

Project = Callable[..., tuple[NomadConfig, Path]]
needs_tools = pytest.mark.skipif(
    not (shutil.which("skopeo") and shutil.which("umoci")), reason="skopeo/umoci not installed"
)


def _build(cfg: NomadConfig, cdir: Path, out: Path, cache: Path) -> Any:
    return build_image(inputs_from_config(cfg, cdir, cdir / "workflows"), out, ModelCache(cache))


def _push(stack: Any, out: Path, repo: str, data: Path, **kw: Any) -> Any:
    return push_image(
        url=stack.registry_url,
        repository=repo,
        tag="t1",
        layout_dir=out,
        data_dir=data,
        insecure=True,
        **kw,
    )


def _host(stack: Any) -> str:
    return str(stack.registry_url).split("://", 1)[1]


@needs_tools
def test_push_then_skopeo_and_umoci_verify(
    stack: Any, project: Project, tmp_path: Path, weights: dict[str, Path]
) -> None:
    """Pushed image: skopeo shows layers+labels, copies with digests kept, umoci unpacks byte-identical."""
    cfg, cdir = project()
    built = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    res = _push(stack, tmp_path / "out", "it/verify", tmp_path / "data")
    assert res.digest == built.manifest_digest and res.count("uploaded") == 6
    assert res.ref == f"{_host(stack)}/it/verify@{built.manifest_digest}"
    assert last_pushed(tmp_path / "data")["ref"] == res.ref  # type: ignore[index]
    ref = f"docker://{_host(stack)}/it/verify:t1"
    info = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", ref],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert info["Layers"] == [layer["digest"] for layer in built.layers]
    assert info["Labels"]["io.nomad.model.vae/vae.safetensors"].startswith("sha256:")
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            ref,
            f"oci:{tmp_path / 'copy'}:t1",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "umoci",
            "unpack",
            "--rootless",
            "--image",
            f"{tmp_path / 'copy'}:t1",
            str(tmp_path / "bundle"),
        ],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "bundle/rootfs/opt/ComfyUI/models"
    for name, src in weights.items():
        assert (root / DESTS[name]).read_bytes() == src.read_bytes()


def test_workflow_change_moves_no_weight_bytes_and_second_repo_mounts(
    stack: Any, project: Project, tmp_path: Path
) -> None:
    """Rebuild after a workflow edit sends only files layer + config; a 2nd repo mounts, 0 weight bytes."""
    cfg, cdir = project()
    first = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    data = tmp_path / "data"
    _push(stack, tmp_path / "out", "it/rebuild", data)
    cfg2, _ = project(workflow_text='{"2": {"edited": true}}')
    second = _build(cfg2, cdir, tmp_path / "out", tmp_path / "cache")
    res = _push(stack, tmp_path / "out", "it/rebuild", data)
    weights = {
        layer["digest"] for layer in second.layers if layer["what"].startswith("nomad: model")
    }
    assert weights == {
        layer["digest"] for layer in first.layers if layer["what"].startswith("nomad: model")
    }
    by = {b.digest: b for b in res.blobs}
    assert sum(by[d].bytes_sent for d in weights) == 0
    uploaded = {b.digest for b in res.blobs if b.action == "uploaded"}
    assert uploaded == {second.layers[-1]["digest"], second.config_digest}
    assert res.bytes_sent == second.layers[-1]["size"] + by[second.config_digest].size
    other = _push(stack, tmp_path / "out", "it/second", data)
    assert other.bytes_sent == 0 and other.count("mounted") == len(other.blobs)


class CutUpload(httpx.BaseTransport):
    """Fault injection over the REAL transport: the PATCH of one blob dies after ``limit`` bytes."""

    def __init__(self, size: int, limit: int) -> None:
        self.inner = httpx.HTTPTransport()
        self.size, self.limit, self.fired = size, limit, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and request.headers.get("content-length") == str(self.size):
            self.fired = True
            request.stream = _Cut(request.stream, self.limit)
        return self.inner.handle_request(request)


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit = inner, limit

    def __iter__(self) -> Iterator[bytes]:
        n = 0
        for chunk in self.inner:
            n += len(chunk)
            if n > self.limit:
                raise httpx.WriteError("connection cut by the test")
            yield chunk


def test_truncated_upload_names_blob_leaves_no_manifest_and_resumes(
    stack: Any, project: Project, tmp_path: Path
) -> None:
    """A cut upload fails naming the blob, no manifest appears, and the re-push sends only that blob."""
    cfg, cdir = project()
    built = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    # blobs go biggest first: cut the clip layer, so the bigger ones have finished before it
    big = next(layer for layer in built.layers if "clip" in layer["what"])
    done_before = {layer["digest"] for layer in built.layers if layer["size"] > big["size"]}
    cut = CutUpload(big["size"], 100 * 1024)
    with pytest.raises(BlobUploadError, match=big["digest"]):
        _push(stack, tmp_path / "out", "it/cut", tmp_path / "data", transport=cut, parallel=1)
    assert cut.fired
    with RegistryClient(stack.registry_url) as c:
        assert not c.has_manifest("it/cut", "t1")
        assert not c.has_manifest("it/cut", built.manifest_digest)
    res = _push(stack, tmp_path / "out", "it/cut", tmp_path / "data")
    actions = {b.digest: b.action for b in res.blobs}
    assert actions[big["digest"]] == "uploaded" and len(done_before) >= 2
    assert all(actions[d] == "exists" for d in done_before)
    # the blob after the cut one may or may not have started before the push stopped
    assert (
        big["size"]
        <= res.bytes_sent
        <= sum(b.size for b in res.blobs if b.digest not in done_before)
    )


def test_truncated_local_blob_is_refused_before_sending(
    stack: Any, project: Project, tmp_path: Path
) -> None:
    """A layout blob shorter than its descriptor is refused by name; the registry gets nothing."""
    cfg, cdir = project()
    built = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    path = OciLayout(tmp_path / "out").blob_path(built.layers[1]["digest"])
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(BuildError, match=f"{built.layers[1]['digest']} is truncated"):
        _push(stack, tmp_path / "out", "it/trunc", tmp_path / "data")
    with RegistryClient(stack.registry_url) as c:
        assert not c.has_manifest("it/trunc", "t1")


def test_wrong_digest_upload_is_rejected_by_the_registry(stack: Any, tmp_path: Path) -> None:
    """Bytes that do not match their digest are refused (DIGEST_INVALID) with the blob named."""
    f = tmp_path / "b"
    f.write_bytes(b"not what the digest says")
    bad = "sha256:" + "0" * 64
    with RegistryClient(stack.registry_url) as c, pytest.raises(BlobUploadError, match=bad) as err:
        c.upload_blob("it/digest", bad, f.stat().st_size, f)
    assert "DIGEST_INVALID" in err.value.message


def test_registry_down_is_clear(project: Project, tmp_path: Path) -> None:
    """Pushing to a port nobody listens on raises RegistryUnreachable naming the URL."""
    cfg, cdir = project()
    _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(RegistryUnreachable, match=f"127.0.0.1:{port}"):
        push_image(
            url=f"http://127.0.0.1:{port}",
            repository="x",
            tag="t1",
            layout_dir=tmp_path / "out",
            data_dir=tmp_path / "data",
        )


@pytest.fixture
def auth_registry(stack: Any, tmp_path: Path) -> Iterator[str]:
    """A second real registry on the same S3, with htpasswd auth (user nomad / pw s3cret)."""
    import bcrypt

    from nomad.dev.stack import find_registry

    cfg = json.loads(Path(stack.registry_config_path).read_text())
    (tmp_path / "htpasswd").write_text(
        f"nomad:{bcrypt.hashpw(b's3cret', bcrypt.gensalt(5)).decode()}\n"
    )
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    cfg["http"]["addr"] = f"127.0.0.1:{port}"
    cfg["auth"] = {"htpasswd": {"realm": "nomad-test", "path": str(tmp_path / "htpasswd")}}
    (tmp_path / "reg.yml").write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    log = open(tmp_path / "reg.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [find_registry(), "serve", str(tmp_path / "reg.yml")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def asks_for_auth() -> bool:
            if proc.poll() is not None:
                pytest.fail((tmp_path / "reg.log").read_text())
            try:
                return httpx.get(url + "/v2/").status_code == 401
            except httpx.TransportError:
                return False

        eventually(asks_for_auth, timeout=10, interval=0.1, what="the htpasswd registry")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def test_bad_credentials_and_good_credentials(
    auth_registry: str, project: Project, tmp_path: Path
) -> None:
    """Wrong password: RegistryAuthError and no manifest; right password: the push succeeds."""
    cfg, cdir = project()
    _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    common: dict[str, Any] = {
        "url": auth_registry,
        "repository": "it/auth",
        "tag": "t1",
        "layout_dir": tmp_path / "out",
        "data_dir": tmp_path / "data",
    }
    with pytest.raises(RegistryAuthError, match="refused") as err:
        push_image(username="nomad", password="wrong", **common)
    assert "password" in (err.value.hint or "")
    with RegistryClient(auth_registry, username="nomad", password="s3cret") as c:
        assert not c.has_manifest("it/auth", "t1")
    res = push_image(username="nomad", password="s3cret", **common)
    assert res.count("uploaded") + res.count("exists") == len(res.blobs)


def test_base_from_registry_reference(stack: Any, project: Project, tmp_path: Path) -> None:
    """A base pulled by reference from a registry keeps its layers; blobs are verified on the way."""
    from nomad.images import write_base_layout

    write_base_layout(tmp_path / "base", "t1")
    _push(stack, tmp_path / "base", "it/base", tmp_path / "data")
    cfg, cdir = project()
    cfg.image.base = f"{_host(stack)}/it/base:t1"
    built = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    base_layer = OciLayout(tmp_path / "base").read_json(
        OciLayout(tmp_path / "base").resolve("t1").digest
    )
    assert built.layers[0]["digest"] == base_layer["layers"][0]["digest"]
    pinned = OciLayout(tmp_path / "base").resolve("t1").digest
    assert built.base_digest == pinned  # the Dockerfile export pins this digest
    from nomad.images._dockerfile import base_stage

    assert base_stage(cfg.image.base, tmp_path, built.base_digest)[0].endswith(f"@{pinned}")


def test_direct_s3_push_is_served_by_the_registry(
    stack: Any, project: Project, tmp_path: Path, weights: dict[str, Path]
) -> None:
    """Blobs written straight into the registry's S3 layout are served, digest-checked, by the registry."""
    weights["vae.safetensors"].write_bytes(os.urandom(300_000))  # a weight no other test pushed
    cfg, cdir = project()
    built = _build(cfg, cdir, tmp_path / "out", tmp_path / "cache")
    res = _push(
        stack, tmp_path / "out", "it/direct", tmp_path / "data", direct_s3=stack.s3_settings()
    )
    assert res.digest == built.manifest_digest
    assert res.count("uploaded") + res.count("mounted") == len(res.blobs)
    vae = next(x for x in built.layers if "vae" in x["what"])
    assert {b.digest: b.bytes_sent for b in res.blobs}[vae["digest"]] == vae["size"]
    with RegistryClient(stack.registry_url) as c:
        for layer in built.layers:
            n = c.download_blob(
                "it/direct", layer["digest"], tmp_path / "blob"
            )  # verifies the digest
            assert n == layer["size"]
        assert c.has_manifest("it/direct", "t1")


def test_multi_chunk_upload_with_a_tiny_chunk_is_stored_intact(stack: Any, tmp_path: Path) -> None:
    """A 5 MiB blob sent as six 1 MiB PATCHes (below S3's 5 MiB part minimum, so the registry
    must re-assemble its parts) is stored byte-exact: the registry accepts the digest and a
    read-back hashes right; the progress callback saw every byte once."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(5 * 1024 * 1024 + 12345))
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    seen: list[int] = []
    with RegistryClient(stack.registry_url) as c:
        sent = c.upload_blob(
            "it/chunks", digest, blob.stat().st_size, blob, chunk=1024 * 1024, on_bytes=seen.append
        )
        assert sent == sum(seen) == blob.stat().st_size
        assert c.download_blob("it/chunks", digest, tmp_path / "back") == blob.stat().st_size
    assert (tmp_path / "back").read_bytes() == blob.read_bytes()


def test_chunk_size_respects_the_s3_part_limit() -> None:
    """PATCH chunks are the driver's 16 MiB, and grow (in 16 MiB steps) so no blob needs more
    than 10,000 parts: 6 GiB stays at 16 MiB, 1 TiB gets >= 1 TiB / 10,000."""
    from nomad.registry._upload import DRIVER_CHUNK, S3_MAX_PARTS, chunk_size_for

    assert chunk_size_for(6 * 1024**3) == DRIVER_CHUNK
    for size in (200 * 1024**3, 1024**4, 5 * 1024**4):
        c = chunk_size_for(size)
        assert c % DRIVER_CHUNK == 0 and -(-size // c) < S3_MAX_PARTS
