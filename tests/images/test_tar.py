"""Deterministic layers: same entries, same bytes; parents, modes, PAX for huge files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from nomad.images._tar import Entry, _header, file_entry, write_layer


def test_layer_is_deterministic_and_digest_is_sha256_of_bytes(tmp_path: Path) -> None:
    """Two writes of the same entries give identical bytes; the digest is their sha256."""
    f = tmp_path / "w.bin"
    f.write_bytes(b"x" * 1000)
    outs = []
    for _ in range(2):
        buf = io.BytesIO()
        info = write_layer([file_entry("opt/m/vae/w.bin", f)], buf)
        outs.append(buf.getvalue())
        assert info.digest == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
        assert info.size == len(buf.getvalue())
    assert outs[0] == outs[1]


def test_layer_has_sorted_parents_fixed_modes_and_zero_times(tmp_path: Path) -> None:
    """Parent dirs are present (0755), files 0644, mtime 0, uid/gid 0, names sorted."""
    a = tmp_path / "a"
    a.write_bytes(b"a")
    buf = io.BytesIO()
    write_layer([file_entry("z/b/file", a), file_entry("a/file", a)], buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["a", "a/file", "z", "z/b", "z/b/file"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() else 0o644)


def test_header_for_file_above_8_gib_uses_pax_size() -> None:
    """A 9 GiB entry gets a PAX size record that tarfile reads back exactly."""
    size = 9 * 1024**3 + 5
    hdr = _header(Entry("opt/big.safetensors", "file", size=size))
    info = tarfile.TarInfo.frombuf(hdr[-512:], "utf-8", "surrogateescape")
    assert b"size=" in hdr  # PAX extended header present
    ext = tarfile.TarFile(fileobj=io.BytesIO(hdr + b"\0" * 1024))
    member = ext.next()
    assert member is not None and member.size == size
    assert info.name.endswith("big.safetensors")


def test_file_that_changes_size_is_an_error(tmp_path: Path) -> None:
    """If a file shrinks between stat and copy the layer is refused, not silently wrong."""
    f = tmp_path / "w"
    f.write_bytes(b"1234")
    e = file_entry("w", f)
    f.write_bytes(b"12")
    try:
        write_layer([e], io.BytesIO())
    except OSError as exc:
        assert "shrank" in str(exc)
    else:
        raise AssertionError("expected OSError")
