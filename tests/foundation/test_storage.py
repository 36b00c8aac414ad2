"""Storage against the real embedded SeaweedFS: round trips and translated errors."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from nomad.dev.stack import StackInfo
from nomad.errors import StorageError
from nomad.storage import ObjectNotFound, S3Settings, Storage


def test_bytes_round_trip(storage: Storage) -> None:
    """put_bytes then get_bytes returns the same bytes and an s3:// URL."""
    url = storage.put_bytes("a/b.txt", b"hello", content_type="text/plain")
    assert url == f"s3://{storage.bucket}/a/b.txt"
    assert storage.get_bytes("a/b.txt") == b"hello"


def test_file_round_trip_multipart(storage: Storage, tmp_path: Path) -> None:
    """A file larger than the multipart threshold comes back byte for byte, with progress."""
    src = tmp_path / "big.bin"
    payload = os.urandom(70 * 1024 * 1024)
    src.write_bytes(payload)
    seen: list[int] = []
    storage.put_file("big/x.bin", src, progress=seen.append)
    assert sum(seen) == len(payload)
    dest = storage.get_file("big/x.bin", tmp_path / "out" / "x.bin")
    assert dest.read_bytes() == payload
    assert not list((tmp_path / "out").glob(".*part"))


def test_list_exists_delete(storage: Storage) -> None:
    """list() is prefix-scoped and sorted; exists/delete agree with it."""
    for key in ("p/2", "p/1", "q/1"):
        storage.put_bytes(key, b"x")
    assert storage.list("p/") == ["p/1", "p/2"]
    assert storage.exists("p/1")
    storage.delete("p/1")
    assert not storage.exists("p/1")
    assert storage.list("p/") == ["p/2"]


def test_missing_key_is_object_not_found(storage: Storage) -> None:
    """Reading a missing key raises ObjectNotFound naming the bucket and key."""
    with pytest.raises(ObjectNotFound) as err:
        storage.get_bytes("nope/missing")
    assert f"s3://{storage.bucket}/nope/missing" in err.value.message


def test_bad_keys_error_names_code_not_secret(stack: StackInfo) -> None:
    """Wrong access keys give InvalidAccessKeyId with a hint, and never echo the secret."""
    settings = dataclasses.replace(
        stack.s3_settings(), access_key_id="WRONGKEY", secret_access_key="wrong-secret-xyz"
    )
    with pytest.raises(StorageError) as err:
        Storage(settings).put_bytes("k", b"x")
    assert "InvalidAccessKeyId" in err.value.message
    assert err.value.hint and "access_key_id" in err.value.hint
    assert "wrong-secret-xyz" not in err.value.message + (err.value.hint or "")


def test_missing_bucket_error(stack: StackInfo) -> None:
    """A missing bucket gives NoSuchBucket with the create hint."""
    with pytest.raises(StorageError) as err:
        Storage(stack.s3_settings("no-such-bucket-here")).put_bytes("k", b"x")
    assert "NoSuchBucket" in err.value.message
    assert err.value.hint and "bucket" in err.value.hint


def test_endpoint_down_error(unused_tcp_port: int) -> None:
    """An endpoint nobody listens on gives 'not answering' and the `nomad dev up` hint."""
    settings = S3Settings(f"http://127.0.0.1:{unused_tcp_port}", "us-east-1", "b", "r", "k", "s")
    with pytest.raises(StorageError) as err:
        Storage(settings).get_bytes("k")
    assert "not answering" in err.value.message
    assert err.value.hint and "nomad dev up" in err.value.hint


def test_presign_gives_working_url(storage: Storage) -> None:
    """A presigned URL downloads the object without credentials."""
    import urllib.request

    storage.put_bytes("pre/x", b"signed")
    url = storage.presign("pre/x", 60)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as resp:
        assert resp.read() == b"signed"


def test_repr_hides_secrets(stack: StackInfo) -> None:
    """StackInfo and S3Settings reprs never contain the keys."""
    for obj in (stack, stack.s3_settings()):
        assert stack.secret_key not in repr(obj)
        assert stack.access_key not in repr(obj)
