"""Model fetch: local, HTTP with Range resume, Hugging Face token, sha256 checks, the cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from nomad.errors import ModelFetchError
from nomad.images import ModelCache, ModelSpec, fetch_models

from .conftest import HttpFiles, stand_in


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_local_source_is_verified_and_not_rehashed(
    tmp_path: Path, weights: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local file is hashed once; the second fetch uses the remembered hash (no re-read)."""
    from nomad.images import _fetch

    cache = ModelCache(tmp_path / "cache")
    w = weights["vae.safetensors"]
    spec = ModelSpec("vae/v.safetensors", str(w), _sha(w.read_bytes()))
    [got] = fetch_models([spec], cache)
    assert got.sha256 == spec.sha256 and got.size == w.stat().st_size and got.path == w

    def no_rehash(*_: object) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(_fetch, "_hash_file", no_rehash)
    [again] = fetch_models([spec], cache)
    assert again.sha256 == spec.sha256
    w.write_bytes(b"changed")  # new size/mtime: must be hashed again (and fail its sha256)
    with pytest.raises(AssertionError, match="hashed again"):
        fetch_models([spec], cache)


def test_wrong_sha256_names_the_file_and_keeps_nothing(
    tmp_path: Path, http_files: HttpFiles
) -> None:
    """A sha256 mismatch raises ModelFetchError naming dest and source; no cache entry remains."""
    http_files.files["/m.bin"] = b"real bytes"
    cache = ModelCache(tmp_path / "cache")
    spec = ModelSpec("loras/m.safetensors", http_files.url + "/m.bin", "0" * 64)
    with pytest.raises(ModelFetchError) as err:
        fetch_models([spec], cache)
    assert "loras/m.safetensors" in err.value.message and "sha256 mismatch" in err.value.message
    assert list(cache.done.iterdir()) == [] and list(cache.partial.iterdir()) == []


def test_http_download_resumes_with_range(tmp_path: Path, http_files: HttpFiles) -> None:
    """A download cut half-way resumes with a Range request and ends byte-identical."""
    data = stand_in("resume", 3 * 1024 * 1024 + 11)
    http_files.files["/w.safetensors"] = data
    http_files.truncate_first.add("/w.safetensors")
    cache = ModelCache(tmp_path / "cache")
    spec = ModelSpec("vae/w.safetensors", http_files.url + "/w.safetensors", _sha(data), len(data))
    with pytest.raises(ModelFetchError):
        fetch_models([spec], cache)
    assert 0 < (cache.partial / f"{spec.sha256}.part").stat().st_size < len(data)
    [got] = fetch_models([spec], cache)
    assert got.path.read_bytes() == data
    assert http_files.requests[-1][1] is not None and http_files.requests[-1][1].startswith(
        "bytes="
    )


def test_cached_file_is_not_downloaded_again(tmp_path: Path, http_files: HttpFiles) -> None:
    """The second fetch of the same sha256 makes no HTTP request."""
    http_files.files["/a"] = b"abc" * 1000
    cache = ModelCache(tmp_path / "cache")
    spec = ModelSpec("vae/a.safetensors", http_files.url + "/a", _sha(b"abc" * 1000))
    fetch_models([spec], cache)
    n = len(http_files.requests)
    fetch_models([spec], cache)
    assert len(http_files.requests) == n


def test_unreachable_source_is_a_clear_error(tmp_path: Path) -> None:
    """A closed port gives ModelFetchError naming the model, not a traceback."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    spec = ModelSpec("vae/x.safetensors", f"http://127.0.0.1:{port}/x", None)
    with pytest.raises(ModelFetchError, match=r"vae/x\.safetensors"):
        fetch_models([spec], ModelCache(tmp_path / "c"))


def test_missing_local_file_and_404_are_clear(tmp_path: Path, http_files: HttpFiles) -> None:
    """A missing path and an HTTP 404 both name the model and say what to do."""
    with pytest.raises(ModelFetchError, match="vae/none") as e1:
        fetch_models([ModelSpec("vae/none", str(tmp_path / "nope"))], ModelCache(tmp_path / "c"))
    assert e1.value.hint
    with pytest.raises(ModelFetchError, match="HTTP 404") as e2:
        fetch_models([ModelSpec("vae/gone", http_files.url + "/gone")], ModelCache(tmp_path / "c"))
    assert "upstream" in (e2.value.hint or "")


def test_hf_token_only_goes_to_hugging_face(tmp_path: Path) -> None:
    """NOMAD_HF_TOKEN is sent as a bearer token to huggingface.co and to nobody else (MockTransport)."""
    seen: dict[str, str | None] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen[req.url.host] = req.headers.get("authorization")
        return httpx.Response(200, content=b"w")

    client = httpx.Client(transport=httpx.MockTransport(handler))
    specs = [
        ModelSpec("vae/a", "https://huggingface.co/org/repo/resolve/main/a.safetensors"),
        ModelSpec("vae/b", "https://example.org/b.safetensors"),
    ]
    fetch_models(
        specs, ModelCache(tmp_path / "c"), client=client, environ={"NOMAD_HF_TOKEN": "hf_x"}
    )
    assert seen == {"huggingface.co": "Bearer hf_x", "example.org": None}


def test_s3_source_through_storage(tmp_path: Path, storage: object) -> None:
    """An s3:// source is read through nomad.storage from the real embedded SeaweedFS."""
    from nomad.storage import Storage

    assert isinstance(storage, Storage)
    data = stand_in("s3", 100_000)
    storage.put_bytes("models/w.safetensors", data)
    spec = ModelSpec(
        "vae/s3.safetensors", f"s3://{storage.bucket}/models/w.safetensors", _sha(data)
    )
    [got] = fetch_models([spec], ModelCache(tmp_path / "c"), s3_settings=storage.settings)
    assert got.path.read_bytes() == data
