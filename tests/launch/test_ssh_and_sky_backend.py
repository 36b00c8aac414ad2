"""SkyPilotBackend over a stub SDK (error translation, idempotent down) and SSH node-pool generation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nomad.backends.base import ClusterState, Offer
from nomad.backends.skypilot.backend import SkyPilotBackend
from nomad.backends.skypilot.task import build_task_config, to_sky_task
from nomad.backends.ssh import SSHBackend, node_pool
from nomad.config.schema import SSHBackendConfig, SSHHost
from nomad.errors import BackendError, ConfigError, NoCapacityError, NoCloudAccessError, QuotaError
from tests.launch.conftest import make_spec


class SkySdkStub:
    """Stands in for SkyPilot's client SDK (request ids + get); raises real sky exceptions on demand."""

    def __init__(self, *, raise_on: dict[str, BaseException] | None = None) -> None:
        self.raise_on = raise_on or {}
        self.calls: list[tuple[str, Any]] = []
        self.clusters: dict[str, str] = {}
        self.init_kind: dict[str, str] = {}

    def _req(self, name: str, arg: Any, result: Any = None) -> Any:
        self.calls.append((name, arg))
        if name in self.raise_on:
            raise self.raise_on[name]
        return result

    def launch(self, task: Any, cluster_name: str, **kw: Any) -> Any:
        self.clusters[cluster_name] = "UP"
        return self._req("launch", (cluster_name, kw), ("launch", cluster_name))

    def stream_and_get(self, request: Any) -> Any:
        return (1, None)

    def get(self, request: Any) -> Any:
        return request

    def status(self, cluster_names: list[str]) -> Any:
        self._req("status", cluster_names)
        return [
            {
                "name": n,
                "status": self.clusters[n],
                "init_kind": self.init_kind.get(n),
                "init_status_reason": "node terminated",
            }
            for n in cluster_names
            if n in self.clusters
        ]

    def down(self, name: str) -> Any:
        self._req("down", name)
        if name not in self.clusters:
            from sky import exceptions

            raise exceptions.ClusterDoesNotExist(f"Cluster {name!r} does not exist.")
        del self.clusters[name]

    def stop(self, name: str) -> Any:
        return self._req("stop", name)

    def endpoints(self, cluster: str, port: int) -> Any:
        return self._req("endpoints", port, {port: f"203.0.113.5:{port}"})

    def ssh_up(self, infra: str) -> Any:
        return self._req("ssh_up", infra)


OFFER = Offer("runpod", "US", "1x_L4_SECURE", "L4", 1, 0.43, False, 24.0)


def test_launch_status_down_through_the_sdk(sky_offline: Any) -> None:
    """launch passes autostop down=True, returns one endpoint per GPU; down twice is fine."""
    sdk = SkySdkStub()
    backend = SkyPilotBackend(sdk=sdk)
    info = backend.launch(make_spec(gpu_count=1), OFFER)
    assert info.state == ClusterState.UP and info.price_per_hour == 0.43
    assert [e.url for e in info.endpoints] == ["http://203.0.113.5:8188"]
    (_, (name, kw)) = sdk.calls[0]
    # the node window: idle 10 + node margin 3 (serve decides first)
    assert name == "nomad-test" and kw == {"idle_minutes_to_autostop": 13, "down": True}
    backend.teardown("nomad-test")
    backend.teardown("nomad-test")
    assert backend.status("nomad-test").state == ClusterState.GONE


@pytest.mark.parametrize(
    ("make_exc", "expected"),
    [
        (
            lambda e: e.ResourcesUnavailableError("Failed to acquire resources in all zones"),
            NoCapacityError,
        ),
        (
            lambda e: e.ResourcesUnavailableError(
                "x", failover_history=[RuntimeError("QUOTA_EXCEEDED: GPUS_ALL_REGIONS")]
            ),
            QuotaError,
        ),
        (lambda e: e.NoCloudAccessError("No cloud access"), NoCloudAccessError),
        (lambda e: e.ApiServerConnectionError("http://127.0.0.1:46580"), BackendError),
    ],
)
def test_sky_errors_are_translated_with_a_hint(
    sky_offline: Any, make_exc: Any, expected: type
) -> None:
    """Real SkyPilot exceptions from launch come out as nomad errors that say what to do."""
    from sky import exceptions

    backend = SkyPilotBackend(sdk=SkySdkStub(raise_on={"launch": make_exc(exceptions)}))
    with pytest.raises(expected) as info:
        backend.launch(make_spec(), OFFER)
    assert type(info.value) is expected and info.value.hint


def _ssh_cfg(tmp_path: Path) -> SSHBackendConfig:
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    other = tmp_path / "other_key"
    other.write_text("x\n")
    return SSHBackendConfig(
        pool="rent5090",
        hosts=[
            SSHHost(ip="198.51.100.7", identity_file=str(key), price_per_hour=0.9),
            SSHHost(
                ip="198.51.100.8",
                user="ubuntu",
                identity_file=str(other),
                port=2222,
                price_per_hour=0.8,
            ),
        ],
    )


def test_ssh_pool_config_is_generated_and_passes_skypilot_checks(
    sky_offline: Any, tmp_path: Path
) -> None:
    """infra.ssh becomes SkyPilot's pool schema; SkyPilot's validator resolves both hosts."""
    cfg = _ssh_cfg(tmp_path)
    entry = node_pool.pool_config(cfg)
    assert entry["user"] == "root" and entry["hosts"][0] == {"ip": "198.51.100.7"}
    assert entry["hosts"][1]["ip"] == "nomad-rent5090-1" and entry["hosts"][1]["user"] == "ubuntu"
    hosts = node_pool.validate_with_skypilot(cfg.pool, entry)
    assert [h["user"] for h in hosts] == ["root", "ubuntu"]
    assert "Port 2222" in node_pool.ssh_config_snippet(cfg)


def test_ssh_pool_file_keeps_other_pools_and_bad_keys_are_refused(
    sky_offline: Any, tmp_path: Path
) -> None:
    """Writing merges into an existing pools file; a missing key file is a ConfigError from SkyPilot's check."""
    pools = tmp_path / "ssh_node_pools.yaml"
    pools.write_text("mine:\n  user: me\n  identity_file: /k\n  hosts: [10.0.0.1]\n")
    backend = SSHBackend(_ssh_cfg(tmp_path), tmp_path / "data", pools_path=pools)
    backend.prepare()
    written = yaml.safe_load(pools.read_text())
    assert set(written) == {"mine", "rent5090"} and oct(pools.stat().st_mode & 0o777) == "0o600"
    bad = SSHBackendConfig(
        pool="p", hosts=[SSHHost(ip="198.51.100.9", identity_file=str(tmp_path / "nope"))]
    )
    with pytest.raises(ConfigError, match="Identity File Missing"):
        node_pool.validate_with_skypilot("p", node_pool.pool_config(bad))
    with pytest.raises(ConfigError, match="identity_file"):
        node_pool.pool_config(SSHBackendConfig(pool="p", hosts=[SSHHost(ip="198.51.100.9")]))


def test_ssh_launch_goes_through_the_pool(sky_offline: Any, tmp_path: Path) -> None:
    """launch brings the pool up, then launches a task pinned to infra ssh/<pool>."""
    sdk = SkySdkStub()
    backend = SSHBackend(
        _ssh_cfg(tmp_path), tmp_path / "data", pools_path=tmp_path / "pools.yaml", sdk=sdk
    )
    spec = make_spec(gpus=("RTX5090",), gpu_count=2)
    offer = backend.plan(spec)[0]
    # two hosts of one kind: SkyPilot may pick either, so the offer is priced at the dearer
    assert (offer.cloud, offer.region, offer.price_per_hour) == ("ssh", "rent5090", 0.9)
    assert build_task_config(spec, offer=offer)["resources"]["infra"] == "ssh/rent5090"
    info = backend.launch(spec)
    assert [c[0] for c in sdk.calls][:2] == ["ssh_up", "launch"] and sdk.calls[0][1] == "rent5090"
    assert info.backend == "ssh" and len(info.endpoints) == 2


def test_ssh_task_passes_sky_validation(sky_offline: Any) -> None:
    """A task pinned to ssh/<pool> is accepted by sky.Task.from_yaml_config."""
    offer = Offer("ssh", "rent5090", None, "RTX5090", 2, 0.8, False)
    task = to_sky_task(build_task_config(make_spec(gpus=("RTX5090",), gpu_count=2), offer=offer))
    (res,) = list(task.resources)
    assert str(res.cloud).lower() == "ssh" and res.accelerators == {"RTX5090": 2}


def test_unhealthy_init_is_reported_failed(sky_offline: Any) -> None:
    """SkyPilot's INIT/unhealthy (node lost) becomes FAILED with SkyPilot's reason; plain INIT is provisioning."""
    sdk = SkySdkStub()
    backend = SkyPilotBackend(sdk=sdk)
    sdk.clusters["c"] = "INIT"
    assert backend.status("c").state == ClusterState.PROVISIONING
    sdk.init_kind["c"] = "unhealthy"
    st = backend.status("c")
    assert st.state == ClusterState.FAILED and st.detail == "node terminated"
