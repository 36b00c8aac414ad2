"""The S3 seam: the only module that imports boto3 (lazily).

Outputs, batch results and (through the registry's own driver) image blobs
live in an S3-compatible bucket: SeaweedFS from ``nomad dev``, or Tigris, R2,
AWS, MinIO. Every botocore failure is turned into :class:`StorageError`
naming the bucket, key and endpoint plus what to do, so callers never see a
vendor exception. Keys are never logged or put in messages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nomad.errors import NomadError, PrivacyError, StorageError

log = logging.getLogger(__name__)

_MiB = 1024 * 1024


class ObjectNotFound(StorageError):
    """The bucket exists but holds no object under that key."""


@dataclass(frozen=True)
class S3Settings:
    """Everything needed to talk to one S3 endpoint; secrets are hidden from repr."""

    endpoint_url: str | None
    region: str
    bucket: str
    registry_bucket: str
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    # privacy.legs.s3: the SOCKS5h proxy every connection goes through (None: direct), and
    # the deadline of its handshake (privacy.connect_timeout)
    proxy: str | None = field(default=None, repr=False)
    proxy_deadline: float = 30.0


class Storage:
    """Small, typed S3 facade bound to one bucket (``settings.bucket`` unless given)."""

    def __init__(
        self,
        settings: S3Settings,
        bucket: str | None = None,
        *,
        client: Any = None,
        connect_timeout: float = 5.0,
        attempts: int = 3,
    ) -> None:
        self.settings = settings
        self.bucket = bucket or settings.bucket
        self._client = client
        self._timeouts = (connect_timeout, attempts)

    def __repr__(self) -> str:
        return f"Storage(endpoint={self.settings.endpoint_url!r}, bucket={self.bucket!r})"

    @property
    def client(self) -> Any:
        """The boto3 client, built on first use so importing nomad never loads boto3."""
        if self._client is None:
            self._client = _make_client(self.settings, *self._timeouts)
        return self._client

    def check(self) -> None:
        """Prove the endpoint answers, the keys work and the bucket exists (HEAD bucket)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if _code(exc) in {"404", "NotFound"}:
                raise StorageError(
                    f"bucket s3://{self.bucket} does not exist at {self.settings.endpoint_url}",
                    hint=_HINTS["NoSuchBucket"],
                ) from exc
            if _code(exc) in {"403", "Forbidden"}:
                raise StorageError(
                    f"access to s3://{self.bucket} at {self.settings.endpoint_url} was refused",
                    hint="check the access key id and secret key (and the bucket policy)",
                ) from exc
            raise self._error(exc, "reach") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists already (ours or reachable)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except Exception as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise self._error(exc, "check the bucket") from exc
        try:
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.settings.region and self.settings.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.settings.region}
            self.client.create_bucket(**kwargs)
        except Exception as exc:
            if _code(exc) in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise self._error(exc, "create the bucket") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> str:
        """Store ``data`` under ``key``; returns the ``s3://`` URL."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            raise self._error(exc, "store", key) from exc
        return self.url(key)

    def put_bytes_if_absent(self, key: str, data: bytes, content_type: str | None = None) -> bool:
        """Store ``data`` unless ``key`` exists; False when it did (nothing written).

        An S3 conditional write (``If-None-Match: *``: AWS, R2, MinIO, SeaweedFS
        answer 412 when the key exists), so two writers racing on one key
        store it once. An endpoint that rejects the header as unsupported gets
        a HEAD-then-PUT instead (not atomic; callers hold their own claim).
        """
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", **extra)
            return True
        except Exception as exc:
            code = _code(exc)
            if code in {"PreconditionFailed", "412"}:
                return False
            if code not in {"NotImplemented", "501"}:
                raise self._error(exc, "store", key) from exc
        if self.exists(key):
            return False
        self.put_bytes(key, data, content_type)
        return True

    def put_file(
        self,
        key: str,
        path: str | os.PathLike[str],
        content_type: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Upload a file (multipart, parallel parts when large); ``progress`` gets byte deltas."""
        from boto3.s3.transfer import TransferConfig

        cfg = TransferConfig(
            multipart_threshold=64 * _MiB, multipart_chunksize=64 * _MiB, max_concurrency=8
        )
        extra = {"ContentType": content_type} if content_type else None
        try:
            self.client.upload_file(
                str(path), self.bucket, key, ExtraArgs=extra, Callback=progress, Config=cfg
            )
        except FileNotFoundError:
            raise StorageError(f"cannot upload {path}: no such file") from None
        except Exception as exc:
            raise self._error(exc, "upload", key) from exc
        return self.url(key)

    def get_bytes(self, key: str) -> bytes:
        """The object's whole content."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            data: bytes = body.read()
            return data
        except Exception as exc:
            raise self._error(exc, "read", key) from exc

    def get_file(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Download to ``path`` atomically (a temp file renamed into place, never half-written)."""
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            self.client.download_file(self.bucket, key, str(tmp))
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise self._error(exc, "download", key) from exc
        tmp.replace(dest)
        return dest

    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except Exception as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise self._error(exc, "check", key) from exc

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, sorted (pages through large listings)."""
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._error(exc, "list", prefix or "(all)") from exc
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove ``key``; deleting a missing key is not an error (S3 semantics)."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise self._error(exc, "delete", key) from exc

    def url(self, key: str) -> str:
        """The ``s3://bucket/key`` form stored in job records."""
        return f"s3://{self.bucket}/{key}"

    def presign(self, key: str, seconds: int = 3600) -> str:
        """A time-limited GET URL (for front doors that hand out links)."""
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=int(seconds)
            )
            return url
        except Exception as exc:
            raise self._error(exc, "presign", key) from exc

    def _error(self, exc: Exception, action: str, key: str | None = None) -> NomadError:
        privacy = _privacy_cause(exc)
        if privacy is not None:  # the proxy, not S3, failed: exit 8 naming the proxy
            return privacy
        return translate_error(
            exc, action=action, bucket=self.bucket, key=key, endpoint=self.settings.endpoint_url
        )


def _make_client(settings: S3Settings, connect_timeout: float = 5.0, attempts: int = 3) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - boto3 is a core dependency
        raise StorageError("boto3 is not installed", hint="pip install boto3") from exc
    config = Config(
        proxies={},  # never HTTP(S)_PROXY from the environment: the route is ours to choose
        connect_timeout=connect_timeout,
        read_timeout=60,
        retries={"max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region or None,
        aws_access_key_id=settings.access_key_id or None,
        aws_secret_access_key=settings.secret_access_key or None,
        config=config,
    )
    if settings.proxy:
        _route_through_socks(client, settings.proxy, settings.proxy_deadline)
    return client


def _route_through_socks(client: Any, proxy: str, deadline: float) -> None:
    """Open every connection of ``client`` through the SOCKS5h ``proxy`` (privacy.legs.s3).

    botocore only knows HTTP proxies (``Config(proxies=…)`` refuses ``socks5h``), so
    its urllib3 pools get connection classes whose socket is opened by
    :func:`nomad.privacy.socks.open_socket`: the S3 host name goes to the proxy (no
    DNS here), TLS runs end to end on top, the handshake has ``deadline``.
    """
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    from nomad.privacy.socks import open_socket

    class _Socks:
        host: str
        port: int
        timeout: float | None

        def _new_conn(self) -> Any:
            timeout = self.timeout if isinstance(self.timeout, int | float) else None
            return open_socket(proxy, self.host, self.port, deadline, timeout)

    class _HTTP(_Socks, AWSHTTPConnection):  # type: ignore[misc]
        pass

    class _HTTPS(_Socks, AWSHTTPSConnection):  # type: ignore[misc]
        pass

    class _HTTPPool(AWSHTTPConnectionPool):  # type: ignore[misc]
        ConnectionCls = _HTTP

    class _HTTPSPool(AWSHTTPSConnectionPool):  # type: ignore[misc]
        ConnectionCls = _HTTPS

    try:
        manager = client._endpoint.http_session._manager  # botocore's one direct PoolManager
    except AttributeError:  # pragma: no cover - a botocore whose internals moved
        raise StorageError(
            "this botocore cannot be routed through the SOCKS proxy (privacy.legs.s3)",
            hint="pin boto3/botocore to a tested version, or set privacy.legs.s3: false",
        ) from None
    manager.clear()
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def _privacy_cause(exc: BaseException) -> PrivacyError | None:
    """The PrivacyError behind a botocore/urllib3 wrapper (``HTTPClientError(error=…)``), if any."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PrivacyError):
            return e
        kwargs = getattr(e, "kwargs", None)  # botocore keeps the wrapped error here
        inner = kwargs.get("error") if isinstance(kwargs, dict) else None
        todo += [e.__cause__, e.__context__, inner if isinstance(inner, BaseException) else None]
    return None


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


_HINTS = {
    "InvalidAccessKeyId": (
        "the access key is wrong: check storage.access_key_id / NOMAD_S3_ACCESS_KEY_ID"
    ),
    "SignatureDoesNotMatch": (
        "the secret key is wrong: check storage.secret_access_key / NOMAD_S3_SECRET_ACCESS_KEY"
    ),
    "AccessDenied": "these keys may not do that: grant read/write/list on the bucket",
    # HEAD requests carry no error body: a bare 403 is usually wrong keys.
    "403": "check storage.access_key_id / storage.secret_access_key (NOMAD_S3_*) and the bucket policy",
    "Forbidden": "check storage.access_key_id / storage.secret_access_key (NOMAD_S3_*) and the bucket policy",
    "NoSuchBucket": (
        "create the bucket (`nomad dev up` does it for the embedded stack) or fix storage.bucket"
    ),
}


def translate_error(
    exc: Exception, *, action: str, bucket: str, key: str | None, endpoint: str | None
) -> StorageError:
    """Turn a botocore exception into a StorageError: what failed, where, what to do."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    at = f" at {endpoint}" if endpoint else ""
    code = _code(exc)
    if code in {"NoSuchKey", "404", "NotFound"} and key:
        return ObjectNotFound(f"cannot {action} {where}{at}: no such object", hint="check the key")
    if code:
        msg = getattr(exc, "response", {}).get("Error", {}).get("Message", "")
        hint = _HINTS.get(code, "see the S3 provider's error code reference")
        return StorageError(f"cannot {action} {where}{at}: {code} {msg}".rstrip(), hint=hint)
    kind = type(exc).__name__
    if kind in {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    }:
        return StorageError(
            f"cannot {action} {where}: S3 endpoint {endpoint or '(AWS default)'} "
            f"is not answering ({kind})",
            hint="start it with `nomad dev up`, or fix storage.endpoint_url / NOMAD_S3_ENDPOINT",
        )
    if kind in {"NoCredentialsError", "PartialCredentialsError"}:
        return StorageError(
            f"cannot {action} {where}{at}: no S3 credentials",
            hint="set NOMAD_S3_ACCESS_KEY_ID and NOMAD_S3_SECRET_ACCESS_KEY",
        )
    return StorageError(f"cannot {action} {where}{at}: {kind}: {exc}")
