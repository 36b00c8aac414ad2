"""Safe tar extraction on every supported Python (3.11.2 has no extraction filters)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nomad import _compat

Extract = Callable[[tarfile.TarFile, Path], None]
# the fallback always; the public entry point (filter="data" where this Python has it)
EXTRACTORS = [_compat._extract_plain, _compat.safe_extractall]


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("extract", EXTRACTORS)
def test_oci_layout_archive_extracts(tmp_path: Path, extract: Extract) -> None:
    """Folders and files of an OCI layout land under dest with their bytes; no setuid survives."""
    dirinfo = tarfile.TarInfo("blobs/sha256")
    dirinfo.type = tarfile.DIRTYPE
    arc = _tar(
        tmp_path / "a.tar",
        [
            (dirinfo, None),
            _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            _file("blobs/sha256/ab", b"blob", mode=0o4755),
        ],
    )
    dest = tmp_path / "out"
    dest.mkdir()
    with tarfile.open(arc) as tf:
        extract(tf, dest)
    assert (dest / "blobs/sha256/ab").read_bytes() == b"blob"
    assert (dest / "oci-layout").exists()
    assert not (dest / "blobs/sha256/ab").stat().st_mode & 0o4000


@pytest.mark.parametrize("extract", EXTRACTORS)
@pytest.mark.parametrize(
    "member",
    [
        _file("../escape", b"x"),
        _file("a/../../escape", b"x"),
        _link("evil", "/etc/passwd"),
        _link("evil", "../../outside"),
        _link("hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "nested-dotdot", "abs-symlink", "rel-symlink-out", "abs-hardlink"],
)
def test_hostile_members_are_refused(
    tmp_path: Path, extract: Extract, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    """Path escapes and links out of dest raise a TarError (BuildError upstream), nothing outside is written."""
    arc = _tar(tmp_path / "bad.tar", [member])
    dest = tmp_path / "deep" / "out"
    dest.mkdir(parents=True)
    with tarfile.open(arc) as tf, pytest.raises(tarfile.TarError):
        extract(tf, dest)
    assert not (tmp_path / "deep" / "escape").exists() and not (tmp_path / "escape").exists()


def test_build_reads_oci_archive_without_filters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a Python without tarfile filters (Debian 12's 3.11.2) nomad takes the fallback, no TypeError."""
    monkeypatch.setattr(_compat, "HAS_TAR_FILTERS", False)
    arc = _tar(tmp_path / "a.tar", [_file("index.json", b"{}")])
    dest = tmp_path / "out"
    dest.mkdir()
    with tarfile.open(arc) as tf:
        _compat.safe_extractall(tf, dest)
    assert (dest / "index.json").read_bytes() == b"{}"


@pytest.mark.parametrize("extract", EXTRACTORS)
def test_absolute_member_never_lands_at_its_absolute_path(tmp_path: Path, extract: Extract) -> None:
    """An absolute member name is refused (fallback) or re-rooted under dest (data filter): never written where it says."""
    outside = tmp_path / "abs-escape"
    arc = _tar(tmp_path / "abs.tar", [_file(str(outside), b"x")])
    dest = tmp_path / "out"
    dest.mkdir()
    with tarfile.open(arc) as tf:
        try:
            extract(tf, dest)
        except tarfile.TarError:
            pass
        else:
            assert (dest / str(outside).lstrip("/")).read_bytes() == b"x"
    assert not outside.exists()
