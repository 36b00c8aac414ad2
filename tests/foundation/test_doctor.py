"""Doctor's database probe against the real PostgreSQL and SQLite paths."""

from __future__ import annotations

from pathlib import Path

from nomad.config import NomadConfig
from nomad.dev import doctor


def _cfg(url: str | None) -> NomadConfig:
    return NomadConfig.model_validate({"queue": {"url": url}} if url else {})


def test_postgres_reachable(pg_dsn: str, tmp_path: Path) -> None:
    """A reachable PostgreSQL queue.url gives an ok, required database line."""
    check = doctor._database(_cfg(pg_dsn), tmp_path)
    assert (check.level, check.required) == ("ok", True)


def test_postgres_unreachable_hides_password(tmp_path: Path, unused_tcp_port: int) -> None:
    """An unreachable PostgreSQL fails with a fix, and the URL's password is never shown."""
    url = f"postgresql://postgres:hunter2-secret@127.0.0.1:{unused_tcp_port}/x"
    check = doctor._database(_cfg(url), tmp_path)
    assert check.level == "fail" and check.fix
    assert "hunter2-secret" not in check.detail + (check.fix or "")


def test_sqlite_default_and_unwritable(tmp_path: Path) -> None:
    """Empty queue.url checks the data dir; a missing folder for sqlite:////… fails."""
    assert doctor._database(_cfg(None), tmp_path).level == "ok"
    bad = doctor._database(_cfg(f"sqlite:///{tmp_path}/missing/dir/q.db"), tmp_path)
    assert bad.level == "fail"


def test_report_ok_only_without_fail() -> None:
    """Report.ok ignores warnings and turns false on any fail."""
    warn = doctor.Check("a", "warn", "x")
    fail = doctor.Check("b", "fail", "y", "do z", True)
    assert doctor.Report((warn,)).ok
    assert not doctor.Report((warn, fail)).ok
    assert doctor.Report((warn, fail)).to_dict()["ok"] is False
