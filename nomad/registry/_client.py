"""A small OCI distribution API client over httpx.

The transport is injectable (``httpx.MockTransport`` in unit tests, a real
local registry in integration tests). Auth: HTTP Basic, and the bearer
token dance (``WWW-Authenticate: Bearer realm=…,service=…,scope=…``) used by
Docker Hub, GHCR and most hosted registries. Every failure becomes a
:class:`RegistryError` that names the registry, repository and object.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from nomad.errors import RegistryError
from nomad.registry._upload import UploadSessions, chunk_size_for, parse_range

CHUNK = 1 << 20
log = logging.getLogger(__name__)
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class RegistryAuthError(RegistryError):
    """The registry refused our credentials (401/403)."""


class BlobUploadError(RegistryError):
    """A blob upload failed or was rejected (digest invalid, truncated, size)."""


class RegistryUnreachable(RegistryError):
    """The registry did not answer at all."""


def _challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


def _error_text(resp: httpx.Response) -> str:
    try:
        errs = resp.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs) or resp.text[:200]
    except Exception:
        return resp.text[:200] if resp.text else resp.reason_phrase


def _route(
    transport: httpx.BaseTransport | None, proxy: str | None, verify: bool
) -> dict[str, Any]:
    """httpx kwargs: the given transport, else through ``proxy`` (handshake deadline), else
    direct — never proxy environment variables."""
    if transport is not None or proxy is None:
        return {"transport": transport, "trust_env": False}
    from nomad.privacy import connect_deadline
    from nomad.privacy.guard import normalize_proxy
    from nomad.privacy.transport import sync_transport

    return {
        "transport": sync_transport(normalize_proxy(proxy), connect_deadline(), verify=verify),
        "trust_env": False,
    }


class RegistryClient:
    """Talks to one registry. Thread-safe: blobs are pushed from several threads at once."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool = True,
        proxy: str | None = None,
    ) -> None:
        url = httpx.URL(base_url.rstrip("/"))
        if url.userinfo:  # never keep credentials in a URL that error messages show
            username, password = username or url.username, password or url.password
            url = url.copy_with(username=None, password=None)
        self.base_url = str(url).rstrip("/")
        self.username = username
        self._password = password
        self._own = client is None
        self.proxy = proxy  # privacy.legs.registry (None: direct); blob fetchers follow it
        self.http = client or httpx.Client(
            verify=verify,
            follow_redirects=True,
            timeout=httpx.Timeout(30.0, read=300.0, write=300.0),
            **_route(transport, proxy, verify),
        )
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        """``host[:port]`` as it appears in references."""
        return httpx.URL(self.base_url).netloc.decode()

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        return (
            path_or_url
            if path_or_url.startswith(("http://", "https://"))
            else self.base_url + path_or_url
        )

    def _same_origin(self, url: str) -> bool:
        """True when ``url`` points at the registry itself (upload Locations may not)."""
        a, b = httpx.URL(url), httpx.URL(self.base_url)
        return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)

    def _basic(self) -> str | None:
        if self.username is None:
            return None
        raw = f"{self.username}:{self._password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def request(
        self, method: str, path: str, *, repo: str, what: str, retry_auth: bool = True, **kw: Any
    ) -> httpx.Response:
        """Send one request with auth; on 401 authenticate and retry once."""
        headers = dict(kw.pop("headers", None) or {})
        auth = self._tokens.get(repo) or self._basic()
        if auth and self._same_origin(self._url(path)):  # never hand credentials to another host
            headers["Authorization"] = auth
        else:
            headers.pop("Authorization", None)
        try:
            resp = self.http.request(method, self._url(path), headers=headers, **kw)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what) from exc
        if resp.status_code == 401 and retry_auth:
            self._authenticate(resp, repo, what)
            return self.request(
                method, path, repo=repo, what=what, retry_auth=False, headers=headers, **kw
            )
        if resp.status_code in (401, 403):
            raise RegistryAuthError(
                f"registry {self.host} refused {what}: HTTP {resp.status_code} {_error_text(resp)}",
                hint="check registry.username/password (NOMAD_REGISTRY_PASSWORD)",
            )
        return resp

    def auth_headers(self, repo: str) -> dict[str, str]:
        """The Authorization header a request for ``repo`` would carry (after it authenticated).

        For byte paths that do not go through httpx (the node's ranged fetch,
        :mod:`nomad.node`). Only ever send it to this registry (:meth:`is_registry_url`).
        """
        auth = self._tokens.get(repo) or self._basic()
        return {"Authorization": auth} if auth else {}

    def is_registry_url(self, url: str) -> bool:
        """True when ``url`` points at this registry (credentials may go there, nowhere else)."""
        return self._same_origin(self._url(url))

    @contextlib.contextmanager
    def stream(self, method: str, path: str, *, repo: str, what: str) -> Iterator[httpx.Response]:
        """A streamed request with auth (one 401 -> authenticate -> retry); errors translated."""
        for attempt in (0, 1):
            headers = {}
            auth = self._tokens.get(repo) or self._basic()
            if auth and self._same_origin(self._url(path)):
                headers["Authorization"] = auth
            try:
                with self.http.stream(method, self._url(path), headers=headers) as resp:
                    if resp.status_code == 401 and attempt == 0:
                        resp.read()
                        self._authenticate(resp, repo, what)
                        continue
                    if resp.status_code in (401, 403):
                        resp.read()
                        raise RegistryAuthError(
                            f"registry {self.host} refused {what}: HTTP {resp.status_code}",
                            hint="check registry.username/password (NOMAD_REGISTRY_PASSWORD)",
                        )
                    yield resp
                    return
            except httpx.TransportError as exc:
                raise self._transport_error(exc, what) from exc

    def _transport_error(self, exc: httpx.TransportError, what: str) -> RegistryError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return RegistryUnreachable(
                f"registry {self.base_url} is not reachable ({what}): {exc}",
                hint="is it running? for the embedded one: `nomad dev up`",
            )
        return BlobUploadError(
            f"registry {self.base_url}: {what} broke: {type(exc).__name__}: {exc}",
            hint="run the same command again: finished blobs are skipped",
        )

    def _authenticate(self, resp: httpx.Response, repo: str, what: str) -> None:
        scheme, params = _challenge(resp.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.username is None:
                raise RegistryAuthError(
                    f"registry {self.host} needs credentials for {what}",
                    hint="set registry.username and registry.password (or NOMAD_REGISTRY_PASSWORD)",
                )
            return  # basic was already sent; the retry will fail with a clear 401
        if scheme != "bearer" or "realm" not in params:
            raise RegistryAuthError(f"registry {self.host}: unsupported auth challenge for {what}")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        headers = {}
        if (basic := self._basic()) is not None:
            headers["Authorization"] = basic
        try:
            tok = self.http.get(params["realm"], params=query, headers=headers)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"token for {what}") from exc
        if tok.status_code != 200:
            raise RegistryAuthError(
                f"registry {self.host}: token service refused {what}: HTTP {tok.status_code}",
                hint="check registry.username/password",
            )
        body = tok.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryAuthError(
                f"registry {self.host}: token service returned no token for {what}"
            )
        with self._lock:
            self._tokens[repo] = f"Bearer {token}"

    def _fail(
        self, resp: httpx.Response, what: str, cls: type[RegistryError] = RegistryError
    ) -> RegistryError:
        msg = f"registry {self.host}: {what} failed: HTTP {resp.status_code} ({_error_text(resp)})"
        if resp.status_code < 500:
            return cls(msg)
        # 5xx from a distribution registry almost always means its storage (S3) failed: say
        # so, and ask /v2/ (503 when the registry's own storage health check fails)
        storage = self._storage_state()
        return cls(
            f"{msg}; {storage}",
            hint="check the S3 storage behind the registry (endpoint up, keys, disk not full"
            "; `nomad dev status` for the embedded stack) and the registry's log, then run the "
            "same command again: finished blobs are skipped, a half-sent one resumes",
        )

    def _storage_state(self) -> str:
        """One phrase about the registry's storage, from a quick GET /v2/ (1 s)."""
        try:
            probe = self.http.get(self.base_url + "/v2/", timeout=1.0)
        except httpx.HTTPError:
            return "the registry itself stopped answering"
        if probe.status_code == 503:
            return "the registry reports its storage (S3) unhealthy"
        return "the registry is up, so its storage (S3) most likely failed or timed out"

    # -- API --------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/ — reachable and speaking the distribution API (auth handled)."""
        resp = self.request("GET", "/v2/", repo="", what="GET /v2/")
        if resp.status_code != 200:
            raise self._fail(resp, "GET /v2/")

    def has_blob(self, repo: str, digest: str) -> bool:
        resp = self.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, what=f"HEAD {repo}@{digest}"
        )
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"HEAD blob {digest} in {repo}")

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when mounted (201), False when the registry declined."""
        what = f"mount {digest} from {from_repo} into {repo}"
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/",
            repo=repo,
            what=what,
            params={"mount": digest, "from": from_repo},
        )
        if resp.status_code == 201:
            return True
        if resp.status_code == 202:
            self._cancel(repo, resp)
            return False
        raise self._fail(resp, what)

    def _cancel(self, repo: str, resp: httpx.Response) -> None:
        loc = resp.headers.get("location")
        if loc:
            with contextlib.suppress(RegistryError):
                self.request("DELETE", self._location(loc), repo=repo, what="cancel upload")

    def _location(self, loc: str) -> str:
        return loc if loc.startswith(("http://", "https://")) else self.base_url + loc

    def upload_blob(
        self,
        repo: str,
        digest: str,
        size: int,
        path: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
        chunk: int | None = None,
        sessions: UploadSessions | None = None,
    ) -> int:
        """Upload one blob in PATCH chunks, resuming a remembered upload; returns bytes sent.

        ``chunk``: bytes per PATCH (default :func:`chunk_size_for`). ``sessions``: where the
        last acknowledged upload location is kept, so a cut push resumes mid-blob.
        """
        what = f"upload of blob {digest} ({size} bytes) to {repo}"
        key = f"{self.host}/{repo}@{digest}"
        chunk = chunk or chunk_size_for(size)
        sessions = sessions or UploadSessions(None)
        loc, offset = self._resume(repo, sessions.get(key), what)
        if loc is None:
            start = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, what=what)
            if start.status_code != 202 or "location" not in start.headers:
                raise self._fail(start, what, BlobUploadError)
            loc, offset = self._location(start.headers["location"]), 0
            sessions.put(key, loc, 0)
        elif on_bytes and offset:
            on_bytes(offset)  # progress bars start where the registry already is
        sent = 0
        while offset < size:
            n = min(chunk, size - offset)
            loc = self._patch(repo, loc, path, offset, n, what, on_bytes)
            offset, sent = offset + n, sent + n
            sessions.put(key, loc, offset)
        url = httpx.URL(loc)
        done = self.request(
            "PUT",
            str(url.copy_merge_params({"digest": digest})),
            repo=repo,
            what=what,
            headers={"Content-Length": "0"},
        )
        if done.status_code != 201:
            if done.status_code in (400, 404):  # bad digest / upload gone: start clean next time
                sessions.drop(key)
            raise self._fail(done, what, BlobUploadError)
        sessions.drop(key)
        got = done.headers.get("docker-content-digest")
        if got and got != digest:
            raise BlobUploadError(
                f"registry {self.host}: {what}: registry stored {got}, expected {digest}"
            )
        return sent

    def _resume(
        self, repo: str, saved: tuple[str, int] | None, what: str
    ) -> tuple[str | None, int]:
        """Ask the registry how much of a remembered upload it holds (GET the location)."""
        if saved is None:
            return None, 0
        loc, offset = saved
        resp = self.request("GET", loc, repo=repo, what=f"status of {what}")
        held = parse_range(resp.headers.get("range"))
        if resp.status_code != 204 or held is None or held != offset:
            log.info(
                "cannot resume %s (HTTP %s, holds %s of %s)", what, resp.status_code, held, offset
            )
            if resp.status_code == 204:
                self._cancel(repo, resp)
            return None, 0
        return self._location(resp.headers.get("location") or loc), offset

    def _patch(
        self,
        repo: str,
        loc: str,
        path: Path,
        offset: int,
        n: int,
        what: str,
        on_bytes: Callable[[int], None] | None,
    ) -> str:
        """Send bytes [offset, offset+n) of the file; return the next upload location."""

        def body() -> Iterator[bytes]:
            left = n
            with open(path, "rb") as f:
                f.seek(offset)
                while left:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        raise OSError(f"{path} shrank during the upload")
                    left -= len(data)
                    if on_bytes:
                        on_bytes(len(data))
                    yield data

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(n),
            "Content-Range": f"{offset}-{offset + n - 1}",
        }
        try:
            patch = self.request(
                "PATCH",
                loc,
                repo=repo,
                what=what,
                retry_auth=False,
                content=body(),
                headers=headers,
            )
        except BlobUploadError as exc:
            raise BlobUploadError(
                f"{exc.message} (at byte {offset} of the blob)",
                hint="run the same command again: finished blobs are skipped and this one "
                f"resumes at byte {offset}",
            ) from exc
        if patch.status_code != 202:
            raise self._fail(patch, what, BlobUploadError)
        held = parse_range(patch.headers.get("range"))
        if held is not None and held != offset + n:
            raise BlobUploadError(
                f"registry {self.host}: {what}: registry holds {held} bytes, expected {offset + n}",
                hint="run the same command again (the upload restarts)",
            )
        return self._location(patch.headers.get("location") or loc)

    def put_manifest(
        self, repo: str, reference: str, body: bytes, media_type: str, digest: str
    ) -> None:
        """PUT the manifest and check the registry computed the same digest."""
        what = f"PUT manifest {repo}:{reference}"
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=what,
            content=body,
            headers={"Content-Type": media_type},
        )
        if resp.status_code not in (200, 201):
            raise self._fail(resp, what)
        got = resp.headers.get("docker-content-digest")
        if got != digest:
            raise RegistryError(
                f"registry {self.host}: {what}: digest {got!r} != {digest}",
                hint="the registry rewrote the manifest; use one that stores it verbatim",
            )

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """The raw manifest bytes and their media type."""
        what = f"GET manifest {repo}:{reference}"
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=what,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if resp.status_code == 404:
            raise RegistryError(f"registry {self.host}: no manifest {repo}:{reference}")
        if resp.status_code != 200:
            raise self._fail(resp, what)
        return resp.content, resp.headers.get("content-type", "").split(";")[0]

    def has_manifest(self, repo: str, reference: str) -> bool:
        what = f"HEAD manifest {repo}:{reference}"
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/manifests/{reference}",
            repo=repo,
            what=what,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        return resp.status_code == 200

    def verify_image(self, repo: str, digest: str, blobs: list[str]) -> None:
        """Read the manifest back by digest and HEAD every blob it names (cheap, no bytes)."""
        import hashlib

        body, _ = self.get_manifest(repo, digest)
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(
                f"registry {self.host}: manifest {repo}@{digest} reads back different"
            )
        missing = [b for b in blobs if not self.has_blob(repo, b)]
        if missing:
            raise RegistryError(
                f"registry {self.host}: {repo}@{digest} misses blobs {', '.join(missing)}"
            )

    def download_blob(
        self, repo: str, digest: str, out: Path, on_bytes: Callable[[int], None] | None = None
    ) -> int:
        """Stream a blob into ``out`` verifying its digest; returns its size."""
        import hashlib

        what = f"GET blob {digest} from {repo}"
        if not self.has_blob(repo, digest):  # also authenticates before the streaming GET
            raise RegistryError(f"registry {self.host}: no blob {digest} in {repo}")
        headers = {}
        if auth := self._tokens.get(repo) or self._basic():
            headers["Authorization"] = auth
        sha = hashlib.sha256()
        n = 0
        try:
            with self.http.stream(
                "GET", self._url(f"/v2/{repo}/blobs/{digest}"), headers=headers
            ) as resp:
                if resp.status_code != 200:
                    resp.read()
                    raise self._fail(resp, what)
                with open(out, "wb") as f:
                    for chunk in resp.iter_bytes(CHUNK):
                        f.write(chunk)
                        sha.update(chunk)
                        n += len(chunk)
                        if on_bytes:
                            on_bytes(len(chunk))
        except httpx.TransportError as exc:
            raise self._transport_error(exc, what) from exc
        if "sha256:" + sha.hexdigest() != digest:
            out.unlink(missing_ok=True)
            raise RegistryError(f"registry {self.host}: {what}: content does not match its digest")
        return n
