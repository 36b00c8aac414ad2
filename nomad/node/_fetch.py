"""Fetch one weight layer straight into its final file: ranges in parallel, hash on the fly.

An uncompressed weight layer is ``tar headers | file bytes | padding + end``.
We read its first 64 KiB to find where the file's bytes start
(:func:`nomad.node._tarhead.first_file`), then split ``[data_start, size)``
into chunks that several streams GET with HTTP ``Range`` at once. Each piece
is written with ``pwrite`` at its final offset in the file — there is no tar
on disk and no extract step; the few header/trailer bytes stay in memory.

Hashing: sha256 is sequential, ranges are not. A hasher thread walks the
chunks in order and hashes each as soon as the contiguous prefix reaches it
(reading it back from the page cache), so the digest is known moments after
the last byte lands — not a second pass over a cold file.

Resume: a small state file next to the partial file records which chunks are
written (only after their ``pwrite`` returned), plus the header/trailer bytes.
A restarted fetch re-hashes the finished chunks from disk and GETs only the
rest. A digest mismatch deletes both files and names the blob: a corrupt blob
is never kept, under any name.

Compressed layers (gzip, from tools that compress) cannot be written at
offsets before they are inflated: they stream sequentially through zlib and
the same header stripping; an interrupted compressed fetch starts over.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import queue
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from nomad.errors import ModelFetchError
from nomad.node._source import BlobSource, Target
from nomad.node._tarhead import FileSpan, NotAWeightLayer, check_tail, first_file
from nomad.privacy import connect_deadline
from nomad.privacy.socks import route_http_client

HEAD_PROBE = 64 * 1024
MAX_HEAD = 1024 * 1024
MAX_TAIL = 1024 * 1024
BUF = 1 << 20
ATTEMPTS = 4
TIMEOUT_S = 60.0

OnBytes = Callable[[int], None]


class CorruptBlobError(ModelFetchError):
    """A blob's bytes do not hash to its digest (corrupt in storage or in transit)."""


class _Expired(Exception):
    """A presigned URL was refused (expired): locate the blob again."""


class _Transient(Exception):
    """A retryable failure (connection dropped, 5xx)."""


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch did: bytes moved over the network, and whether it resumed."""

    digest: str
    path: Path
    file_size: int
    file_path: str
    bytes_moved: int
    resumed_bytes: int
    via: str


class _Http:
    """One keep-alive connection per (thread, host); stdlib http.client (fastest readinto here)."""

    def __init__(self, proxy: str | None = None, deadline: float = 30.0) -> None:
        self._local = threading.local()
        self._proxy, self._deadline = proxy, deadline  # SOCKS5h route (None: direct)

    def conn(self, url: str) -> tuple[http.client.HTTPConnection, str]:
        u = urlsplit(url)
        key = (u.scheme, u.netloc)
        conns: dict[tuple[str, str], http.client.HTTPConnection] = (
            getattr(self._local, "conns", None) or {}
        )
        self._local.conns = conns
        c = conns.get(key)
        if c is None:
            if u.scheme == "https":
                c = http.client.HTTPSConnection(
                    u.netloc, timeout=TIMEOUT_S, context=ssl.create_default_context()
                )
            else:
                c = http.client.HTTPConnection(u.netloc, timeout=TIMEOUT_S)
            if self._proxy:
                route_http_client(c, self._proxy, self._deadline)
            conns[key] = c
        return c, (u.path or "/") + (f"?{u.query}" if u.query else "")

    def drop(self, url: str) -> None:
        u = urlsplit(url)
        conns = getattr(self._local, "conns", {})
        c = conns.pop((u.scheme, u.netloc), None)
        if c is not None:
            c.close()

    def get_range(
        self,
        target: Target,
        start: int,
        end: int,
        total: int,
        sink: Callable[[int, memoryview], None],
        pipe: _Pipe | None = None,
    ) -> None:
        """GET bytes [start, end) and hand them to ``sink(position, data)`` as they arrive
        (or, with ``pipe``, to its consumer thread, in buffers taken from its pool)."""
        conn, path = self.conn(target.url)
        headers = {**target.headers, "Range": f"bytes={start}-{end - 1}"}
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self.drop(target.url)
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if resp.status in (401, 403):  # presigned URL or registry token expired: locate again
            resp.read()
            raise _Expired(f"HTTP {resp.status}")
        if resp.status >= 500:
            resp.read()
            raise _Transient(f"HTTP {resp.status}")
        if resp.status != 206:
            body = resp.read(300).decode("utf-8", "replace")
            self.drop(target.url)
            raise ModelFetchError(
                f"{target.where}: range request answered HTTP {resp.status} ({body.strip()[:160]})",
                hint="the server must support HTTP Range (S3 and the distribution registry do)",
            )
        crange = resp.getheader("content-range") or ""
        if crange != f"bytes {start}-{end - 1}/{total}":
            resp.read()
            raise ModelFetchError(
                f"{target.where}: asked bytes {start}-{end - 1}/{total}, got {crange!r}",
                hint="the blob in storage has a different size than the manifest says",
            )
        own = bytearray(BUF)
        pos = start
        try:
            while pos < end:
                buf = pipe.buffer() if pipe else own
                try:
                    n = resp.readinto(memoryview(buf)[: min(BUF, end - pos)])
                except BaseException:
                    if pipe:
                        pipe.give_back(buf)
                    raise
                if not n:
                    if pipe:
                        pipe.give_back(buf)
                    raise _Transient(f"connection closed at byte {pos} of {start}-{end - 1}")
                if pipe:
                    pipe.put(pos, buf, n)
                else:
                    sink(pos, memoryview(buf)[:n])
                pos += n
        except (OSError, http.client.HTTPException) as exc:
            self.drop(target.url)
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc


class _Pipe:
    """Streams receive, one consumer thread writes and hashes: the two overlap on two cores.

    Buffers come from a fixed pool (backpressure: a stream waits when the
    consumer is behind). :meth:`flush` returns once everything put before it
    was processed — a chunk is marked written only after that.
    """

    def __init__(self, process: Callable[[int, memoryview], None], depth: int = 8) -> None:
        self.process = process
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(depth):
            self.free.put(bytearray(BUF))
        self.q: queue.SimpleQueue[tuple[int, bytearray, int] | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="fetch-writer")
        self.thread.start()

    def buffer(self) -> bytearray:
        return self.free.get()

    def give_back(self, buf: bytearray) -> None:
        self.free.put(buf)

    def put(self, pos: int, buf: bytearray, n: int) -> None:
        self.q.put((pos, buf, n))

    def flush(self) -> None:
        ev = threading.Event()
        self.q.put(ev)
        ev.wait()
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (item := self.q.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()
                continue
            pos, buf, n = item
            if self.error is None:
                try:
                    self.process(pos, memoryview(buf)[:n])
                except BaseException as exc:  # handed to the stream at its next flush
                    self.error = exc
            self.free.put(buf)


class _State:
    """The resume record of one partial file (JSON, replaced atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, object] | None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def save(self, doc: dict[str, object]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)


class BlobFetch:
    """Fetch one weight layer blob into ``part`` (the bare file), resumable via ``state``."""

    def __init__(
        self,
        source: BlobSource,
        digest: str,
        size: int,
        part: Path,
        state: Path,
        *,
        media_type: str = "",
        what: str = "",
        streams: int = 4,
        chunk: int = 32 * 1024 * 1024,
        on_bytes: OnBytes | None = None,
    ) -> None:
        self.source = source
        self.digest = digest
        self.size = size
        self.part = part
        self.state = _State(state)
        self.media_type = media_type
        self.what = what or digest
        self.streams = max(1, streams)
        self.chunk = max(BUF, chunk)
        self.on_bytes = on_bytes or (lambda _n: None)
        self.http = _Http(getattr(source, "proxy", None), connect_deadline())
        self._target: Target | None = None
        self._tlock = threading.Lock()
        self.moved = 0
        self._mlock = threading.Lock()

    # -- locating ------------------------------------------------------------------
    def target(self, refresh: bool = False) -> Target:
        with self._tlock:
            if self._target is None or refresh:
                self._target = self.source.locate(self.digest)
            return self._target

    def _count(self, n: int) -> None:
        with self._mlock:
            self.moved += n
        self.on_bytes(n)

    def _get(
        self,
        start: int,
        end: int,
        sink: Callable[[int, memoryview], None],
        pipe: _Pipe | None = None,
    ) -> None:
        """GET a range with bounded retries; a refused presigned URL is located again."""
        refresh = False
        for attempt in range(ATTEMPTS):
            target = self.target(refresh)
            try:
                self.http.get_range(target, start, end, self.size, sink, pipe)
                return
            except _Expired as exc:
                refresh = True
                last: Exception = exc
            except _Transient as exc:
                last = exc
            if attempt + 1 < ATTEMPTS:
                time.sleep(min(4.0, 0.25 * 2**attempt))
        raise ModelFetchError(
            f"{self.what}: reading {self.target().where} failed {ATTEMPTS} times: {last}",
            hint="run the same command again: finished chunks are kept",
        )

    # -- entry point ---------------------------------------------------------------
    def run(self) -> FetchOutcome:
        if self.media_type.endswith(("+gzip", ".gzip")):
            return self._run_compressed()
        if self.media_type.endswith("zstd"):
            raise ModelFetchError(
                f"{self.what}: zstd layers cannot be fetched by nomad yet",
                hint="use baked mode, or build the image with nomad (uncompressed layers)",
            )
        return self._run_ranged()

    # -- uncompressed: ranged, parallel, resumable -----------------------------------
    def _head(self) -> tuple[bytes, FileSpan]:
        want = min(self.size, HEAD_PROBE)
        while True:
            got = bytearray(want)

            def sink(pos: int, data: memoryview, got: bytearray = got) -> None:
                got[pos : pos + len(data)] = data

            self._get(0, want, sink)
            self._count(want)
            try:
                span = first_file(got)
            except NotAWeightLayer as exc:
                raise ModelFetchError(
                    f"{self.what}: not a single-file weight layer: {exc}"
                ) from None
            if span is not None:
                break
            if want >= min(self.size, MAX_HEAD):
                raise ModelFetchError(f"{self.what}: tar headers longer than {MAX_HEAD} bytes")
            want = min(self.size, MAX_HEAD)
        tail = self.size - span.offset - span.size
        if tail < 0 or tail > MAX_TAIL:
            raise ModelFetchError(
                f"{self.what}: not a single-file weight layer (file of {span.size} bytes "
                f"in a {self.size}-byte layer)"
            )
        return bytes(got[: span.offset]), span

    def _resume(self) -> dict[str, object] | None:
        doc = self.state.load()
        if not doc or (doc.get("digest"), doc.get("size"), doc.get("chunk")) != (
            self.digest,
            self.size,
            self.chunk,
        ):
            return None
        try:
            if self.part.stat().st_size != doc["file_size"]:
                return None
        except OSError:
            return None
        return doc

    def _run_ranged(self) -> FetchOutcome:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        doc = self._resume()
        if doc is None:
            self.state.clear()
            head, span = self._head()
            done: set[int] = set()
            tail = bytearray(self.size - span.offset - span.size)
            fd = os.open(self.part, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.ftruncate(fd, span.size)
        else:
            head = base64.b64decode(str(doc["head"]))
            span = FileSpan(str(doc["file_path"]), len(head), int(str(doc["file_size"])))
            done = {int(i) for i in doc["done"]}  # type: ignore[attr-defined]
            tail = bytearray(base64.b64decode(str(doc["tail"])))
            fd = os.open(self.part, os.O_RDWR)
        try:
            return self._fill(fd, head, span, done, tail, resumed=doc is not None)
        finally:
            os.close(fd)

    def _fill(
        self, fd: int, head: bytes, span: FileSpan, done: set[int], tail: bytearray, resumed: bool
    ) -> FetchOutcome:
        start, fend = span.offset, span.offset + span.size
        n_chunks = max(1, -(-(self.size - start) // self.chunk))
        bounds = [
            (start + i * self.chunk, min(self.size, start + (i + 1) * self.chunk))
            for i in range(n_chunks)
        ]
        resumed_bytes = sum(bounds[i][1] - bounds[i][0] for i in done)
        cond = threading.Condition()
        errors: list[BaseException] = []
        todo = [i for i in range(n_chunks) if i not in done]

        def save() -> None:
            self.state.save(
                {
                    "digest": self.digest,
                    "size": self.size,
                    "chunk": self.chunk,
                    "file_path": span.path,
                    "file_size": span.size,
                    "head": base64.b64encode(head).decode(),
                    "tail": base64.b64encode(bytes(tail)).decode(),
                    "done": sorted(done),
                }
            )

        sha = hashlib.sha256(head)
        hlock = threading.Lock()
        hashed = [start]  # blob offset up to which ``sha`` has consumed the file's bytes

        def sink(pos: int, data: memoryview) -> None:
            n = len(data)
            if pos < fend:
                k = min(n, fend - pos)
                os.pwrite(fd, data[:k], pos - start)
                # bytes that continue the hashed prefix are hashed now, from memory; only
                # out-of-order ranges are left for the in-order pass to re-read
                with hlock:
                    if pos <= hashed[0] < pos + k:
                        sha.update(data[hashed[0] - pos : k])
                        hashed[0] = pos + k
            if pos + n > fend:
                a = max(pos, fend)
                tail[a - fend : pos + n - fend] = data[a - pos :]
            self._count(n)

        def worker() -> None:
            while True:
                with cond:
                    if errors or not todo:
                        return
                    i = todo.pop(0)
                try:
                    self._get(*bounds[i], sink, pipe)
                    pipe.flush()  # its bytes are written: only now may the state say so
                except BaseException as exc:
                    with cond:
                        errors.append(exc)
                        cond.notify_all()
                    return
                with cond:
                    done.add(i)
                    save()
                    cond.notify_all()

        if not resumed:
            save()
        pipe = _Pipe(sink, depth=2 * self.streams + 2)
        threads = [
            threading.Thread(target=worker, daemon=True)
            for _ in range(min(self.streams, len(todo)))
        ]
        for t in threads:
            t.start()
        buf = bytearray(BUF)
        view = memoryview(buf)
        for i in range(n_chunks):
            with cond:
                while i not in done and not errors:
                    cond.wait()
                if errors:
                    break
            with hlock:  # chunk i is on disk: hash whatever of it the streams could not
                a, b = hashed[0] - start, min(bounds[i][1], fend) - start
                while a < b:
                    n = os.preadv(fd, [view[: min(BUF, b - a)]], a)
                    if n <= 0:
                        raise ModelFetchError(f"{self.what}: {self.part} shrank while fetched")
                    sha.update(view[:n])
                    a += n
                hashed[0] = max(hashed[0], start + b)
        for t in threads:
            t.join()
        pipe.close()
        if errors:
            raise errors[0]
        sha.update(tail)
        self._check(sha.hexdigest(), bytes(tail))
        os.fdatasync(fd)
        self.state.clear()
        return FetchOutcome(
            self.digest,
            self.part,
            span.size,
            span.path,
            self.moved,
            resumed_bytes,
            self.target().via,
        )

    def _check(self, hexd: str, tail: bytes) -> None:
        if "sha256:" + hexd != self.digest:
            where = self.target().where
            self.part.unlink(missing_ok=True)
            self.state.clear()
            raise CorruptBlobError(
                f"{self.what}: blob {self.digest} read from {where} is corrupt: its bytes hash to "
                f"sha256:{hexd}",
                hint="nothing was kept; push the image again (`nomad push`) to repair the registry",
            )
        try:
            check_tail(tail)
        except NotAWeightLayer as exc:
            self.part.unlink(missing_ok=True)
            self.state.clear()
            raise ModelFetchError(f"{self.what}: not a single-file weight layer: {exc}") from None

    # -- compressed: one sequential stream ---------------------------------------------
    def _run_compressed(self) -> FetchOutcome:
        self.part.parent.mkdir(parents=True, exist_ok=True)
        self.state.clear()
        # a retried GET starts again at byte 0: every piece of stream state starts over with it
        inflate = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        sha = hashlib.sha256()
        pending = bytearray()
        span: list[FileSpan] = []
        written = [0]
        tail = bytearray()
        seen = [0]
        out = open(self.part, "wb")  # noqa: SIM115 - closed in finally, used by the closure

        def restart() -> None:
            nonlocal inflate, sha
            inflate, sha = zlib.decompressobj(wbits=47), hashlib.sha256()
            pending.clear()
            span.clear()
            tail.clear()
            written[0] = 0
            out.seek(0)
            out.truncate()

        def take(raw: bytes) -> None:
            if not span:
                pending.extend(raw)
                try:
                    s = first_file(pending)
                except NotAWeightLayer as exc:
                    raise ModelFetchError(
                        f"{self.what}: not a single-file weight layer: {exc}"
                    ) from None
                if s is None:
                    if len(pending) > MAX_HEAD:
                        raise ModelFetchError(
                            f"{self.what}: tar headers longer than {MAX_HEAD} bytes"
                        )
                    return
                span.append(s)
                raw = bytes(pending[s.offset :])
                pending.clear()
            left = span[0].size - written[0]
            if left > 0:
                out.write(raw[:left])
                written[0] += min(left, len(raw))
            if len(raw) > left:
                tail.extend(raw[max(left, 0) :])
                if len(tail) > MAX_TAIL:
                    raise ModelFetchError(f"{self.what}: not a single-file weight layer")

        def sink(pos: int, data: memoryview) -> None:
            if pos == 0 and seen[0]:
                restart()
            seen[0] = pos + len(data)
            sha.update(data)
            take(inflate.decompress(data))
            self._count(len(data))

        try:
            try:
                self._get(0, self.size, sink)
                take(inflate.flush())
            except zlib.error as exc:
                raise ModelFetchError(f"{self.what}: layer does not inflate ({exc})") from None
            out.flush()
            os.fdatasync(out.fileno())
        except BaseException:
            out.close()
            self.part.unlink(missing_ok=True)
            raise
        out.close()
        if not span or written[0] != span[0].size:
            self.part.unlink(missing_ok=True)
            if "sha256:" + sha.hexdigest() == self.digest:
                raise ModelFetchError(f"{self.what}: layer ends inside its file")
        self._check(sha.hexdigest(), bytes(tail))
        return FetchOutcome(
            self.digest, self.part, span[0].size, span[0].path, self.moved, 0, self.target().via
        )
