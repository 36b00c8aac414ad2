"""privacy.node: each ComfyUI published as a hidden service with keys nomad made, so the address
is known before the node exists and stays the same on every wake.

Real: Debian `tor` (and `anon` where present) reading nomad's key files and writing the address
it publishes; the sky/ run script executed by bash; the local backend's supervisor process;
SkyPilot's own task validation. The clients run with `DisableNetwork 1` (they publish nothing and
touch no network) — reachability through an onion network is shown in test_onion_serve.py.
FakeComfy stands in for ComfyUI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from nomad.backends.base import ClusterState, LaunchSpec
from nomad.backends.local.backend import LocalBackend
from nomad.backends.local.process import free_port
from nomad.backends.skypilot.task import build_task_config, load_template, to_sky_task
from nomad.config.schema import LocalBackendConfig, NodePrivacy, PrivacyConfig
from nomad.errors import PrivacyError
from nomad.privacy.keys import ensure_key, read_key
from nomad.privacy.node import NodeHiddenServices, comfy_command, from_config
from nomad.privacy.onion import parse
from nomad.testing.wait import eventually

OFFLINE = ("DisableNetwork 1",)  # the client loads its keys and writes the address, nothing more


def _client(name: str) -> str:
    """The real binary, or skip saying how to get it."""
    if name == "anon":
        for cand in (os.environ.get("ANON_BIN"), shutil.which("anon"),
                     str(Path(sys.executable).with_name("anon"))):  # fmt: skip
            if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
                return cand
        pytest.skip("anon not present (bash .ci/setup --tests fetches it from npm)")
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed (apt-get install {name})")
    return found


def _spec(tmp_path: Path, client: str = "tor", binary: str = "tor", **kw: object) -> NodeHiddenServices:
    return NodeHiddenServices(
        client=client, binary=binary, ship_binary=None,
        keys_root=str(tmp_path / "keys"), extra=OFFLINE, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_keys_are_private_stable_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    """0600 key in a 0700 folder, the same address on the second call, half a key or a
    world-readable key is an error that names the file instead of a new address."""
    first = ensure_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "k" / "hs_ed25519_secret_key").stat().st_mode & 0o777 == 0o600
    again = ensure_key(tmp_path / "k")
    assert again.address("anon") == first.address("anon")
    assert parse(first.address("anon")).pubkey == parse(first.address("onion")).pubkey
    (tmp_path / "k" / "hs_ed25519_secret_key").chmod(0o644)
    with pytest.raises(PrivacyError, match="readable by others"):
        read_key(tmp_path / "k")
    (tmp_path / "k" / "hs_ed25519_secret_key").unlink()
    with pytest.raises(PrivacyError, match="half a hidden-service key"):
        ensure_key(tmp_path / "k")


@pytest.mark.parametrize("client", ["tor", "anon"])
def test_the_client_publishes_nomads_key_under_the_address_nomad_computed(
    tmp_path: Path, client: str
) -> None:
    """The real anon/tor reads nomad's key files and writes exactly the address nomad predicted."""
    binary = _client(client)
    spec = _spec(tmp_path, client=client, binary=binary)
    key = spec.keys("c1", 1)[0]
    from nomad.privacy.node import install_keys, render_rc

    base = tmp_path / "node"
    base.mkdir(mode=0o700)
    install_keys(key, base / "gpu0")
    rc = tmp_path / "rc"
    rc.write_text(render_rc(spec, base, [(base / "gpu0", 8188)], log=tmp_path / "log"))
    check = subprocess.run([binary, "--verify-config", "-f", str(rc)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout[-800:]
    proc = subprocess.Popen([binary, "-f", str(rc)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        written = eventually(
            lambda: (base / "gpu0" / "hostname").exists()
            and (base / "gpu0" / "hostname").read_text().strip(),
            timeout=30, what=f"{client} to write the hostname",
        )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert written == key.address(spec.suffix)
    assert written.endswith(".anon" if client == "anon" else ".onion")


def test_comfy_command_listens_on_loopback_without_metadata() -> None:
    cmd = "python3 /opt/ComfyUI/main.py --listen 0.0.0.0 --disable-auto-launch"
    out = comfy_command(cmd, loopback=True, disable_metadata=True)
    assert out.split() == [
        "python3", "/opt/ComfyUI/main.py", "--listen", "127.0.0.1",
        "--disable-auto-launch", "--disable-metadata",
    ]  # fmt: skip
    assert comfy_command(cmd, loopback=False, disable_metadata=False) == cmd


def test_config_decides_who_publishes(tmp_path: Path) -> None:
    assert from_config(PrivacyConfig(), tmp_path) is None  # privacy off: open ports as before
    on = from_config(PrivacyConfig(enabled=True, extra_config=["DisableNetwork 1"]), tmp_path)
    assert on is not None and on.client == "anon" and on.suffix == "anon"
    assert on.extra == ("DisableNetwork 1",)
    off = PrivacyConfig(enabled=True, node=NodePrivacy(publish="never"))
    assert from_config(off, tmp_path) is None
    forced = from_config(PrivacyConfig(node=NodePrivacy(publish="always", client="tor")), tmp_path)
    assert forced is not None and forced.suffix == "onion"
    with pytest.raises(PrivacyError, match="ship_binary"):
        from_config(PrivacyConfig(enabled=True, node=NodePrivacy(ship_binary="/nope/anon")), tmp_path)


def test_sky_task_opens_no_port_and_ships_keys(tmp_path: Path) -> None:
    """The task SkyPilot gets: no `ports`, the key folder as a file mount, NOMAD_HS set; the
    addresses are the endpoints, known before launch; SkyPilot's own Task accepts it."""
    hidden = _spec(tmp_path, client="anon", binary="anon")
    spec = LaunchSpec(
        cluster_name="nomad-p", image_ref="127.0.0.1:5000/p@sha256:" + "a" * 64,
        gpus=("L4",), gpu_count=2, hidden=hidden,
    )  # fmt: skip
    cfg = build_task_config(spec)
    assert "ports" not in cfg["resources"]
    ship = Path(cfg["file_mounts"]["~/.nomad/hs-ship"])
    assert sorted(p.name for p in ship.iterdir()) == ["extra.rc", "gpu0", "gpu1"]
    assert (ship / "extra.rc").read_text() == "DisableNetwork 1\n"
    assert cfg["envs"]["NOMAD_HS"] == "1" and cfg["envs"]["NOMAD_HS_CLIENT"] == "anon"
    pytest.importorskip("sky")
    to_sky_task(cfg)  # SkyPilot's validation
    urls = hidden.urls("nomad-p", 2)
    assert len(set(urls)) == 2 and all(u.endswith(".anon") for u in urls)
    assert urls == hidden.urls("nomad-p", 2)  # the next wake: the same addresses


@pytest.mark.parametrize("client", ["tor", "anon"])
def test_run_script_publishes_each_comfy_and_restarts_its_client(
    tmp_path: Path, client: str
) -> None:
    """sky/comfyui.yaml's run script, executed by bash with NOMAD_HS=1 and the real tor/anon: it
    writes the keys nomad shipped, the client publishes both servers under nomad's addresses, a
    killed client is started again, and when the watchdog ends the job the client is gone too."""
    tor = _client(client)
    hidden = _spec(tmp_path, client=client, binary=tor)
    home = tmp_path / "home"
    (home / ".nomad").mkdir(parents=True)
    shutil.copytree(hidden.ship_folder("c2", 2), home / ".nomad" / "hs-ship")
    base = free_port()
    while True:  # two consecutive free ports
        import socket

        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
                break
            except OSError:
                base = free_port()
    env = {
        **os.environ, "HOME": str(home), "SKYPILOT_NUM_GPUS_PER_NODE": "2",
        "NOMAD_COMFY_PORT": str(base), "NOMAD_IDLE_MINUTES": "0.3", "NOMAD_WATCHDOG_POLL_S": "0.5",
        "NOMAD_COMFY_CMD": f"{sys.executable} -m nomad.testing.comfy --host 127.0.0.1",
        "NOMAD_WATCHDOG_CMD": f"{sys.executable} -m nomad.watchdog",
        "NOMAD_HS": "1", "NOMAD_HS_CLIENT": client, "NOMAD_HS_BIN": tor, "NOMAD_HS_PORT": "80",
    }  # fmt: skip
    proc = subprocess.Popen(
        ["bash", "-c", load_template()["run"]], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    hs = home / ".nomad" / "hs"
    try:
        for i, key in enumerate(hidden.keys("c2", 2)):
            host = eventually(
                lambda i=i: (hs / f"gpu{i}" / "hostname").exists()
                and (hs / f"gpu{i}" / "hostname").read_text().strip(),
                timeout=30, what=f"hostname of gpu{i}",
            )  # fmt: skip
            assert host == key.address(hidden.suffix)
        rc = (hs / "rc").read_text()
        assert f"HiddenServicePort 80 127.0.0.1:{base + 1}" in rc and "DisableNetwork 1" in rc
        first = eventually(lambda: (hs / "pid").exists() and int((hs / "pid").read_text()),
                           timeout=20, what="the client's pid file")  # fmt: skip
        os.kill(first, signal.SIGKILL)
        second = eventually(
            lambda: (hs / "pid").exists() and int((hs / "pid").read_text()) != first
            and int((hs / "pid").read_text()),
            timeout=30, what="the client to be started again",
        )  # fmt: skip
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    events = [json.loads(ln) for ln in (home / ".nomad" / "wake.jsonl").read_text().splitlines()]
    assert {"phase": "hidden_service_config", "ok": True}.items() <= next(
        e for e in events if e["phase"] == "hidden_service_config"
    ).items()
    assert not Path(f"/proc/{second}").exists() or _zombie(second), "the client outlived the job"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("client", ["tor", "anon"])
def test_local_backend_publishes_its_servers_and_keeps_the_address(
    tmp_path: Path, client: str
) -> None:
    """Local backend + privacy.node: endpoints are the addresses (not host:port), the supervisor
    runs tor/anon next to the servers and restarts it when killed, teardown stops it, and the
    next wake's cluster gets the same address."""
    tor = _client(client)
    hidden = _spec(tmp_path, client=client, binary=tor)
    comfy = [sys.executable, "-m", "nomad.testing.comfy", "--host", "127.0.0.1", "--port", "{port}"]
    backend = LocalBackend(
        LocalBackendConfig(mode="command", command=comfy, gpus=1, price_per_hour=0.5),
        tmp_path / "data",
    )
    spec = LaunchSpec(cluster_name="loc", image_ref="", comfy_port=free_port(), hidden=hidden)
    info = backend.launch(spec)
    run_dir = tmp_path / "data" / "local" / "loc"
    try:
        address = hidden.keys("loc", 1)[0].address(hidden.suffix)
        assert [e.url for e in info.endpoints] == [f"http://{address}"]
        assert info.extra["hidden_services"] == [f"http://{address}"]
        written = eventually(
            lambda: (run_dir / "hs" / "gpu0" / "hostname").exists()
            and (run_dir / "hs" / "gpu0" / "hostname").read_text().strip(),
            timeout=30, what="the node client's hostname",
        )  # fmt: skip
        assert written == address
        assert backend.status("loc").endpoints[0].url == f"http://{address}"
        first = json.loads((run_dir / "hs.json").read_text())["pid"]
        os.kill(first, signal.SIGKILL)
        restarted = eventually(
            lambda: (doc := json.loads((run_dir / "hs.json").read_text()))["pid"] != first and doc,
            timeout=20, what="the supervisor to restart the client",
        )  # fmt: skip
        assert restarted["restarts"] == 1
    finally:
        backend.teardown("loc")
    assert backend.status("loc").state is ClusterState.GONE
    eventually(lambda: _zombie(restarted["pid"]) or not Path(f"/proc/{restarted['pid']}").exists(),
               timeout=15, what="the client to stop with the cluster")  # fmt: skip
    # serve names every wake anew: the next wake's cluster takes the gone one's key slot
    again = backend.launch(replace(spec, cluster_name="loc-2"))
    try:
        assert [e.url for e in again.endpoints] == [f"http://{address}"]
        other = hidden.keys("loc-3", 1, in_use=backend._exists)[0].address(hidden.suffix)
        assert other != address  # loc-2 still runs: a second cluster never shares its address
    finally:
        backend.teardown("loc-2")


def test_key_slots_follow_clusters_not_names(tmp_path: Path) -> None:
    """A new cluster takes the slot of one that was released, or of one its backend no longer
    has once the launch grace is over; never the slot of one that may still be launching."""
    from nomad.privacy.keys import release, slot_for

    now = [1000.0]
    alive = {"a"}
    root = tmp_path / "keys"
    assert slot_for(root, "a", alive.__contains__, clock=lambda: now[0]) == "slot0"
    assert slot_for(root, "a", alive.__contains__, clock=lambda: now[0]) == "slot0"
    assert slot_for(root, "b", alive.__contains__, clock=lambda: now[0]) == "slot1"
    alive.discard("b")  # b vanished but was assigned moments ago: maybe still launching
    assert slot_for(root, "c", alive.__contains__, clock=lambda: now[0]) == "slot2"
    now[0] += 3600
    assert slot_for(root, "d", alive.__contains__, clock=lambda: now[0]) == "slot1"
    release(root, "a")
    assert slot_for(root, "e", alive.__contains__, clock=lambda: now[0]) == "slot0"


def test_a_static_anon_is_shipped_a_dynamic_tor_is_not(tmp_path: Path) -> None:
    """With client anon and no node binary named, the anon this machine runs is shipped when it
    is the static linux/x86-64 build (the npm package's); Debian's dynamic tor never is."""
    from nomad.privacy.node import is_static_x86_64

    tor = shutil.which("tor")
    if tor is not None:
        assert not is_static_x86_64(Path(tor))
    anon = _client("anon")
    assert is_static_x86_64(Path(anon))
    node = from_config(PrivacyConfig(enabled=True, binary=anon), tmp_path)
    assert node is not None and node.ship_binary == str(Path(anon).resolve())
    named = from_config(
        PrivacyConfig(enabled=True, binary=anon, node=NodePrivacy(binary="/usr/bin/anon")), tmp_path
    )
    assert named is not None and named.ship_binary is None  # the image has its own
