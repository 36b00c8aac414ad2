"""Session-wide fixtures: a fresh PostgreSQL database per run, the embedded stack.

Integration tests use real local services on loopback only. Fixtures specific
to one area live in that area's own conftest.py (tests/<area>/conftest.py).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from nomad.dev.stack import StackInfo
    from nomad.storage import Storage

_NETGUARD = Path(__file__).resolve().parent / "_netguard"
_NETLOG = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Guard the whole run: no Python process of the suite may connect outside loopback.

    See tests/_netguard/sitecustomize.py: refused connects are recorded in a log
    that :func:`pytest_sessionfinish` turns into a failed session.
    """
    import importlib.util
    import sys
    import tempfile

    fd, log = tempfile.mkstemp(prefix="nomad-netguard-", suffix=".log")
    os.close(fd)
    os.environ["NOMAD_TEST_NETLOG"] = log
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_NETGUARD), *([old] if old else [])])
    sys.path.insert(0, str(_NETGUARD))  # children built from sys.path (the plan worker) too
    spec = importlib.util.spec_from_file_location("_nomad_netguard", _NETGUARD / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)
    guard.install()
    config.stash[_NETLOG] = log


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process of it tried to connect outside loopback."""
    log = session.config.stash.get(_NETLOG, None)
    if not log:
        return
    try:
        lines = Path(log).read_text(encoding="utf-8").splitlines()
    finally:
        Path(log).unlink(missing_ok=True)
    if lines:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = "connections outside loopback were attempted (and refused):\n  " + "\n  ".join(lines)
        if reporter is not None:
            reporter.write_line(f"NETWORK GUARD: {msg}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _loggers_restored() -> Iterator[None]:
    """Each test ends with the loggers' levels, ``disabled`` and ``propagate`` as it began.

    Logging is process-wide state: a test (or a library it imports — SkyPilot's
    ``sky.client.sdk_async`` sets httpx to CRITICAL at import) would otherwise
    change what every later test logs. A logger created during the test goes
    back to the defaults unless its library gave it handlers of its own (then
    the library configured it on purpose, e.g. SkyPilot's ``sky``). Handlers
    belong to pytest and are not touched.
    """
    loggers = logging.root.manager.loggerDict
    default = (logging.NOTSET, False, True)
    saved = {
        name: (lg.level, lg.disabled, lg.propagate)
        for name, lg in loggers.items()
        if isinstance(lg, logging.Logger)
    }
    root_level = logging.root.level
    yield
    for name, lg in list(loggers.items()):
        if not isinstance(lg, logging.Logger) or (name not in saved and lg.handlers):
            continue
        level, disabled, propagate = saved.get(name, default)
        if (lg.level, lg.disabled, lg.propagate) != (level, disabled, propagate):
            lg.setLevel(level)  # clears the effective-level caches too
            lg.disabled, lg.propagate = disabled, propagate
    logging.root.setLevel(root_level)


PG_ADMIN_DSN = os.environ.get("NOMAD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """A brand-new PostgreSQL database for this test run, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"nomad_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment fault
        pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    """A real embedded stack (SeaweedFS + registry on loopback) for this run, stopped after."""
    from nomad.dev.stack import Stack

    # die_with_parent: a test run killed by `timeout` must not leave SeaweedFS behind.
    st = Stack(tmp_path_factory.mktemp("nomad-stack"), die_with_parent=True)
    try:
        info = st.up()
    except BaseException:
        st.down()
        raise
    try:
        yield info
    finally:
        st.down()


@pytest.fixture
def storage(stack: StackInfo) -> Storage:
    """A Storage on a fresh bucket of the session stack, so tests never see each other's keys."""
    from nomad.storage import Storage

    store = Storage(stack.s3_settings(f"t-{uuid.uuid4().hex[:12]}"))
    store.ensure_bucket()
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A queue URL per backend (SQLite file, fresh PostgreSQL DB): the same tests run on both."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/q.db"
        return
    dsn = request.getfixturevalue("pg_dsn")
    yield dsn
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN IF to_regclass('jobs') IS NOT NULL THEN "
            "TRUNCATE jobs, state; END IF; "
            "IF to_regclass('clusters') IS NOT NULL THEN TRUNCATE clusters, leases; END IF; END $$"
        )
