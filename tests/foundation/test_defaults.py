"""resolve_storage / resolve_registry: config first, then the embedded stack, else a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad.config import NomadConfig
from nomad.dev.defaults import resolve_registry, resolve_storage
from nomad.dev.stack import StackInfo
from nomad.errors import StackError


def _cfg(**sections: dict[str, object]) -> NomadConfig:
    return NomadConfig.model_validate(sections)


def test_configured_storage_wins(stack: StackInfo) -> None:
    """storage.endpoint_url and keys from config are used even when a stack exists."""
    cfg = _cfg(storage={"endpoint_url": "https://s3.example.com", "bucket": "out",
                        "access_key_id": "AK", "secret_access_key": "SK", "region": "eu-1"})  # fmt: skip
    s = resolve_storage(cfg, stack.data_dir)
    assert (s.endpoint_url, s.bucket, s.region) == ("https://s3.example.com", "out", "eu-1")
    assert (s.access_key_id, s.secret_access_key) == ("AK", "SK")
    assert "SK" not in repr(s)


def test_embedded_storage_when_unconfigured(stack: StackInfo) -> None:
    """With no endpoint configured, the stack's endpoint, keys and outputs bucket are used."""
    s = resolve_storage(_cfg(), stack.data_dir)
    assert s.endpoint_url == stack.s3_endpoint
    assert (s.bucket, s.registry_bucket) == ("nomad", "registry")
    assert (s.access_key_id, s.secret_access_key) == (stack.access_key, stack.secret_key)


def test_no_storage_and_no_stack_is_stack_error(tmp_path: Path) -> None:
    """Neither config nor stack ⇒ StackError telling to run `nomad dev up` or set the endpoint."""
    with pytest.raises(StackError) as err:
        resolve_storage(_cfg(), tmp_path)
    assert err.value.hint and "nomad dev up" in err.value.hint
    assert "storage.endpoint_url" in err.value.hint
    with pytest.raises(StackError) as err:
        resolve_registry(_cfg(), tmp_path)
    assert err.value.hint and "registry.url" in err.value.hint


def test_embedded_registry_has_s3_keys(stack: StackInfo) -> None:
    """The embedded registry is insecure loopback HTTP with the registry bucket's S3 settings."""
    r = resolve_registry(_cfg(project="demo"), stack.data_dir)
    assert r.url == stack.registry_url and r.repository == "demo" and r.insecure
    assert r.s3 is not None and r.s3.registry_bucket == stack.registry_bucket
    assert r.s3.access_key_id == stack.access_key


def test_configured_registry(stack: StackInfo) -> None:
    """registry.url from config wins; password kept but hidden; no S3 unless direct_s3 + keys."""
    cfg = _cfg(registry={"url": "https://reg.example.com/", "repository": "r", "username": "u",
                         "password": "pw-123"})  # fmt: skip
    r = resolve_registry(cfg, stack.data_dir)
    assert (r.url, r.repository, r.username, r.password) == (
        "https://reg.example.com",
        "r",
        "u",
        "pw-123",
    )
    assert r.s3 is None and not r.insecure
    assert "pw-123" not in repr(r)
    direct = _cfg(registry={"url": "https://reg.example.com", "direct_s3": True},
                  storage={"endpoint_url": "https://s3.example.com", "access_key_id": "AK",
                           "secret_access_key": "SK"})  # fmt: skip
    assert resolve_registry(direct, stack.data_dir).s3 is not None


def test_registry_url_credentials_move_to_the_login(tmp_path: Path) -> None:
    """registry.url with user:pass@ resolves to a clean URL plus username/password."""
    reg = resolve_registry(_cfg(registry={"url": "https://bob:pw1234@reg.example.com/"}), tmp_path)
    assert reg.url == "https://reg.example.com"
    assert (reg.username, reg.password) == ("bob", "pw1234")
