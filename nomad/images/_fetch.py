"""Model weights: fetch once per machine into a content-addressed cache.

Sources: a local path, ``http(s)://`` (resumed with HTTP Range), ``s3://``
(through :mod:`nomad.storage`) and Hugging Face ``resolve`` URLs (token from
``NOMAD_HF_TOKEN`` or ``HF_TOKEN``, sent only to huggingface.co). Every byte
is hashed while it streams; a declared sha256 that does not match is an
error naming the file, and the bad bytes are discarded. Cache layout::

    CACHE/models/sha256/<hex>        finished, verified files
    CACHE/models/partial/<key>.part  interrupted downloads (resumed next time)
    CACHE/models/known.json          source/local-file -> sha256 (skip re-hashing)
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from nomad.errors import ModelFetchError

CHUNK = 1 << 20
HF_HOSTS = ("huggingface.co", "hf.co")

Progress = Callable[[str, int, int | None], None]  # (dest, bytes_just_done, total_or_None)


@dataclass(frozen=True)
class ModelSpec:
    """What to fetch: a destination under the models tree, a source, maybe hash/size."""

    dest: str
    source: str
    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class FetchedModel:
    """A verified weight on local disk."""

    dest: str
    source: str
    path: Path
    sha256: str
    size: int


def public_source(source: str) -> str:
    """The source without query string or user info (safe for labels and logs)."""
    if "://" not in source:
        return source
    parts = urlsplit(source)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ModelCache:
    """The content-addressed cache of weights on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "models"
        self.done = self.root / "sha256"
        self.partial = self.root / "partial"
        self._lock = threading.Lock()
        for d in (self.done, self.partial):
            d.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        return self.done / sha256

    def lookup(self, key: str) -> str | None:
        return self._known().get(key)

    def remember(self, key: str, sha256: str) -> None:
        with self._lock:
            known = self._known()
            known[key] = sha256
            tmp = self.root / f".known.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(json.dumps(known, sort_keys=True, indent=0))
            os.replace(tmp, self.root / "known.json")

    def _known(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / "known.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def adopt(self, tmp: Path, sha256: str) -> Path:
        final = self.path_for(sha256)
        os.replace(tmp, final)
        return final


def hf_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The Hugging Face token from NOMAD_HF_TOKEN, then HF_TOKEN."""
    env = os.environ if environ is None else environ
    return env.get("NOMAD_HF_TOKEN") or env.get("HF_TOKEN") or None


def fetch_models(
    specs: Sequence[ModelSpec],
    cache: ModelCache,
    *,
    base_dir: Path | None = None,
    parallel: int = 4,
    client: httpx.Client | None = None,
    progress: Progress | None = None,
    environ: Mapping[str, str] | None = None,
    s3_settings: Any = None,
    proxy: str | None = None,
) -> list[FetchedModel]:
    """Fetch and verify every spec (in parallel); results keep the input order.

    ``proxy``: http(s) sources go through this SOCKS5h proxy (privacy.legs.downloads) with its
    handshake deadline; None is direct. Proxy environment variables are never read. ``s3://``
    sources follow ``s3_settings.proxy`` (privacy.legs.s3).
    """
    from nomad import privacy

    own = client is None
    http = client or httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(30.0, read=120.0),
        **privacy.sync_client_kwargs(proxy),
    )
    fetcher = _Fetcher(
        cache, http, base_dir or Path.cwd(), progress, hf_token(environ), s3_settings
    )
    try:
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            return list(pool.map(fetcher.fetch, specs))
    finally:
        if own:
            http.close()


class _Fetcher:
    def __init__(
        self,
        cache: ModelCache,
        http: httpx.Client,
        base_dir: Path,
        progress: Progress | None,
        token: str | None,
        s3_settings: Any = None,
    ) -> None:
        self.s3_settings = s3_settings
        self.cache = cache
        self.http = http
        self.base_dir = base_dir
        self.progress = progress
        self.token = token

    def _tick(self, spec: ModelSpec, n: int) -> None:
        if self.progress:
            self.progress(spec.dest, n, spec.size)

    def fetch(self, spec: ModelSpec) -> FetchedModel:
        if spec.sha256 and self.cache.path_for(spec.sha256).is_file():
            return self._cached(spec, spec.sha256)
        scheme = urlsplit(spec.source).scheme if "://" in spec.source else ""
        if scheme == "":
            return self._local(spec)
        known = self.cache.lookup(public_source(spec.source))
        if known and not spec.sha256 and self.cache.path_for(known).is_file():
            return self._cached(spec, known)
        if scheme in ("http", "https"):
            return self._http(spec)
        if scheme == "s3":
            return self._s3(spec)
        raise ModelFetchError(
            f"model {spec.dest}: unsupported scheme {scheme!r}: {public_source(spec.source)}",
            hint="use a local path, http(s)://, s3://bucket/key or a Hugging Face resolve URL",
        )

    def _cached(self, spec: ModelSpec, sha: str) -> FetchedModel:
        path = self.cache.path_for(sha)
        size = path.stat().st_size
        self._tick(spec, size)
        return FetchedModel(spec.dest, spec.source, path, sha, size)

    def _local(self, spec: ModelSpec) -> FetchedModel:
        path = Path(spec.source).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        try:
            st = path.stat()
        except OSError as exc:
            raise ModelFetchError(
                f"model {spec.dest}: source {path} is not readable ({exc.strerror})",
                hint="fix the `source:` path in nomad.yaml (relative to the config's folder)",
            ) from None
        key = f"file:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
        sha = self.cache.lookup(key)
        if sha is None:
            sha = _hash_file(path, lambda n: self._tick(spec, n))
            self.cache.remember(key, sha)
        else:
            self._tick(spec, st.st_size)
        _check(spec, sha, st.st_size)
        return FetchedModel(spec.dest, spec.source, path, sha, st.st_size)

    def _partial(self, spec: ModelSpec) -> Path:
        key = spec.sha256 or hashlib.sha256(public_source(spec.source).encode()).hexdigest()
        return self.cache.partial / f"{key}.part"

    def _http(self, spec: ModelSpec) -> FetchedModel:
        part = self._partial(spec)
        headers = {}
        host = urlsplit(spec.source).hostname or ""
        if self.token and (host in HF_HOSTS or host.endswith(".huggingface.co")):
            headers["Authorization"] = f"Bearer {self.token}"
        have = part.stat().st_size if part.exists() else 0
        if have:
            headers["Range"] = f"bytes={have}-"
        what = public_source(spec.source)
        try:
            with self.http.stream("GET", spec.source, headers=headers) as resp:
                if resp.status_code == 416 and have:
                    part.unlink(missing_ok=True)
                    return self._http(spec)
                if resp.status_code not in (200, 206):
                    raise ModelFetchError(
                        f"model {spec.dest}: GET {what} answered HTTP {resp.status_code}",
                        hint=_http_hint(resp.status_code),
                    )
                mode = "ab" if resp.status_code == 206 and have else "wb"
                sha = hashlib.sha256()
                if mode == "ab":
                    _hash_into(part, sha, lambda n: self._tick(spec, n))
                with open(part, mode) as out:
                    for chunk in resp.iter_bytes(CHUNK):
                        out.write(chunk)
                        sha.update(chunk)
                        self._tick(spec, len(chunk))
        except httpx.HTTPError as exc:
            raise ModelFetchError(
                f"model {spec.dest}: cannot download {what}: {type(exc).__name__}: {exc}",
                hint="check the URL and your network; run again to resume from where it stopped",
            ) from exc
        return self._finish(spec, part, sha.hexdigest())

    def _s3(self, spec: ModelSpec) -> FetchedModel:
        from nomad.images._s3fetch import download_s3

        part = self._partial(spec)
        sha = hashlib.sha256()
        download_s3(
            spec.source,
            part,
            sha,
            lambda n: self._tick(spec, n),
            what=spec.dest,
            settings=self.s3_settings,
        )
        return self._finish(spec, part, sha.hexdigest())

    def _finish(self, spec: ModelSpec, part: Path, sha: str) -> FetchedModel:
        size = part.stat().st_size
        try:
            _check(spec, sha, size)
        except ModelFetchError:
            part.unlink(missing_ok=True)
            raise
        path = self.cache.adopt(part, sha)
        self.cache.remember(public_source(spec.source), sha)
        return FetchedModel(spec.dest, spec.source, path, sha, size)


def _http_hint(status: int) -> str:
    if status in (401, 403):
        return "the source needs credentials: set NOMAD_HF_TOKEN (or HF_TOKEN) for Hugging Face"
    if status == 404:
        return "the file is not at that URL (moved or deleted upstream?)"
    return "try again later; a partial download resumes where it stopped"


def _check(spec: ModelSpec, sha: str, size: int) -> None:
    if spec.sha256 and sha != spec.sha256:
        raise ModelFetchError(
            f"model {spec.dest}: sha256 mismatch for {public_source(spec.source)}: "
            f"expected {spec.sha256}, got {sha}",
            hint="the source changed or the sha256 is wrong; the bad copy was discarded",
        )
    if spec.size is not None and size != spec.size:
        raise ModelFetchError(
            f"model {spec.dest}: size mismatch for {public_source(spec.source)}: "
            f"expected {spec.size} bytes, got {size}",
        )


def _hash_into(path: Path, sha: Any, tick: Callable[[int], None]) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb") as f:
        while n := f.readinto(buf):
            sha.update(view[:n])
            tick(n)


def _hash_file(path: Path, tick: Callable[[int], None]) -> str:
    sha = hashlib.sha256()
    _hash_into(path, sha, tick)
    return sha.hexdigest()
