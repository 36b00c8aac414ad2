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


def _exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


# Stand-in for HashiCorp's `nomad` (a Go binary on real machines): any executable that is not ours.
OTHER = "#!/bin/sh\necho 'Nomad v1.9.0'\n"
OURS = "#!/usr/bin/python3\nfrom nomad.cli.main import main\nmain()\n"


def test_other_nomad_first_on_path_is_reported(tmp_path: Path) -> None:
    """A different program named nomad ahead on PATH → warn naming it, ours, and the fix."""
    other = _exe(tmp_path / "usr-bin" / "nomad", OTHER)
    ours = _exe(tmp_path / "venv" / "bin" / "nomad", OURS)
    check = doctor.command_on_path(f"{other.parent}:{ours.parent}", ours)
    assert (
        check.level == "warn" and str(other) in check.detail and "different program" in check.detail
    )
    assert check.fix and str(ours) in check.fix


def test_ours_first_on_path_is_ok_and_names_the_shadowed(tmp_path: Path) -> None:
    """This install first on PATH → ok; a later HashiCorp nomad is listed as shadowed."""
    other = _exe(tmp_path / "usr-bin" / "nomad", OTHER)
    ours = _exe(tmp_path / "venv" / "bin" / "nomad", OURS)
    check = doctor.command_on_path(f"{ours.parent}:{other.parent}", ours)
    assert check.level == "ok" and str(other) in check.detail


def test_another_install_of_nomad_or_none_on_path(tmp_path: Path) -> None:
    """Another venv's nomad first → 'another install'; no nomad on PATH at all → warn with the fix."""
    theirs = _exe(tmp_path / "old" / "bin" / "nomad", OURS)
    ours = _exe(tmp_path / "venv" / "bin" / "nomad", OURS)
    check = doctor.command_on_path(f"{theirs.parent}:{ours.parent}", ours)
    assert check.level == "warn" and "another install" in check.detail
    none = doctor.command_on_path(str(tmp_path / "empty"), ours)
    assert none.level == "warn" and none.fix and "activate" in none.fix


def test_doctor_process_reports_shadowing_nomad(tmp_path: Path) -> None:
    """The real `nomad doctor --json` run with a stand-in HashiCorp nomad first on PATH says so."""
    import json
    import os
    import subprocess
    import sys

    other = _exe(tmp_path / "hashicorp" / "nomad", OTHER)
    ours = Path(sys.executable).with_name("nomad")
    env = {
        **os.environ,
        "PATH": f"{other.parent}:{ours.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [str(ours), "--data-dir", str(tmp_path / "d"), "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    line = next(c for c in json.loads(proc.stdout)["checks"] if c["name"] == "nomad on PATH")
    assert line["level"] == "warn" and str(other) in line["detail"]
    assert str(ours.resolve()) in line["fix"]
