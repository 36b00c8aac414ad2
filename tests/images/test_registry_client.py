"""Registry client against httpx.MockTransport: auth flows, errors, references (no network)."""

from __future__ import annotations

import httpx
import pytest

from nomad.errors import RegistryError, UsageError
from nomad.registry import (
    MountIndex,
    RegistryAuthError,
    RegistryClient,
    RegistryUnreachable,
    parse_reference,
    target_for,
)

D = "sha256:" + "a" * 64


def test_bearer_token_dance_and_token_reuse() -> None:
    """A 401 Bearer challenge fetches a token (with basic creds) once and retries with it."""
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.method} {req.url.path}")
        if req.url.path == "/token":
            assert req.headers["authorization"].startswith("Basic ")
            assert req.url.params["scope"] == "repository:org/app:pull"
            return httpx.Response(200, json={"token": "T"})
        if req.headers.get("authorization") != "Bearer T":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": (
                        'Bearer realm="https://reg.test/token",service="reg",scope="repository:org/app:pull"'
                    )
                },
            )
        return httpx.Response(200)

    c = RegistryClient(
        "https://reg.test", username="u", password="p", transport=httpx.MockTransport(handler)
    )
    assert c.has_blob("org/app", D) and c.has_blob("org/app", D)
    assert calls == [
        f"HEAD /v2/org/app/blobs/{D}",
        "GET /token",
        *[f"HEAD /v2/org/app/blobs/{D}"] * 2,
    ]


def test_bad_credentials_are_an_auth_error_naming_the_registry() -> None:
    """Basic auth refused twice gives RegistryAuthError naming the host and the object."""
    t = httpx.MockTransport(
        lambda r: httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
    )
    c = RegistryClient("https://reg.test", username="u", password="wrong", transport=t)
    with pytest.raises(RegistryAuthError, match=r"reg\.test.*HEAD org/app@"):
        c.has_blob("org/app", D)


def test_manifest_digest_mismatch_is_refused() -> None:
    """A Docker-Content-Digest different from ours is an error, not a silent success."""
    t = httpx.MockTransport(lambda r: httpx.Response(201, headers={"Docker-Content-Digest": D}))
    c = RegistryClient("https://reg.test", transport=t)
    with pytest.raises(RegistryError, match="digest"):
        c.put_manifest(
            "app", "v1", b"{}", "application/vnd.oci.image.manifest.v1+json", "sha256:" + "b" * 64
        )


def test_registry_down_is_unreachable_error() -> None:
    """A connect failure becomes RegistryUnreachable with a `nomad dev up` hint."""

    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    c = RegistryClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler))
    with pytest.raises(RegistryUnreachable) as err:
        c.ping()
    assert "nomad dev up" in (err.value.hint or "")


def test_credentials_in_the_registry_url_become_the_login_and_never_show() -> None:
    """https://user:pass@host: errors name the host only; the pair is sent as Basic auth."""
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers.get("Authorization", ""))
        raise httpx.ConnectError("refused", request=req)

    c = RegistryClient("http://bob:pw1234@127.0.0.1:9", transport=httpx.MockTransport(handler))
    with pytest.raises(RegistryUnreachable) as err:
        c.ping()
    assert "pw1234" not in str(err.value) and "127.0.0.1:9" in str(err.value)
    assert c.base_url == "http://127.0.0.1:9" and seen[0].startswith("Basic ")


def test_mount_declined_cancels_the_session() -> None:
    """A 202 answer to a mount means 'not mounted': the opened upload is deleted."""
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.method)
        if req.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/b/blobs/uploads/u1"})
        return httpx.Response(204)

    c = RegistryClient("http://reg.test", transport=httpx.MockTransport(handler))
    assert c.mount_blob("b", D, "a") is False
    assert seen == ["POST", "DELETE"]


def test_mount_index_persists(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Recorded holders survive a reload; forget removes one."""
    idx = MountIndex(tmp_path / "m.json")
    idx.record("r", D, "a")
    idx.record("r", D, "b")
    again = MountIndex(tmp_path / "m.json")
    assert again.holders("r", D) == ["b", "a"]
    again.forget("r", D, "b")
    assert MountIndex(tmp_path / "m.json").holders("r", D) == ["a"]


def test_references() -> None:
    """Docker Hub defaults, ports, digests and bad names are handled."""
    assert parse_reference("ubuntu").repository == "library/ubuntu"
    r = parse_reference("127.0.0.1:5000/team/app:v2")
    assert (r.host, r.repository, r.tag) == ("127.0.0.1:5000", "team/app", "v2")
    assert parse_reference("ghcr.io/o/i@sha256:" + "c" * 64).target == "sha256:" + "c" * 64
    with pytest.raises(UsageError, match="Bad"):
        parse_reference("ghcr.io/Bad/Name")
    assert target_for("other:v9", "http://127.0.0.1:5", "proj", "t") == (
        "http://127.0.0.1:5",
        "other",
        "v9",
    )
    assert target_for(None, "http://h:5", "proj", "t") == ("http://h:5", "proj", "t")


def test_credentials_never_sent_to_another_host() -> None:
    """A request to an absolute URL on another host (e.g. an upload Location) carries no Authorization."""
    seen: dict[str, str | None] = {}

    def handler(req: httpx.Request) -> httpx.Response:
        seen[req.url.host] = req.headers.get("authorization")
        return httpx.Response(200)

    c = RegistryClient(
        "https://reg.test", username="u", password="p", transport=httpx.MockTransport(handler)
    )
    c.request("GET", "/v2/", repo="r", what="ping")
    c.request("PUT", "https://uploads.elsewhere.test/blob?x=1", repo="r", what="upload")
    assert seen["reg.test"] is not None and seen["reg.test"].startswith("Basic ")
    assert seen["uploads.elsewhere.test"] is None


def test_direct_s3_choice_is_honoured_or_refused() -> None:
    """--direct-s3 with a REF on the configured registry writes to S3; elsewhere it is a usage error."""
    from nomad.registry._service import direct_s3_for

    s3 = object()
    own = "http://127.0.0.1:5000"
    assert direct_s3_for(True, "http://127.0.0.1:5000", own, s3) is s3
    assert direct_s3_for(None, own, own, s3) is s3
    assert direct_s3_for(None, "https://ghcr.io", own, s3) is None
    assert direct_s3_for(False, own, own, s3) is None
    with pytest.raises(UsageError, match=r"ghcr\.io:443 is not the configured registry"):
        direct_s3_for(True, "https://ghcr.io", own, s3)
    with pytest.raises(UsageError, match="bucket's keys"):
        direct_s3_for(True, own, own, None)
