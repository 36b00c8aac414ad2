"""``SSHBackend``: rented boxes reachable by SSH, launched through SkyPilot's SSH node pools.

nomad writes the pool into ``~/.sky/ssh_node_pools.yaml``, validates it with
SkyPilot's own checks, brings the pool up (``sky ssh up``), then launches the
same task as the skypilot backend pinned to ``infra: ssh/<pool>``. Status and
teardown are SkyPilot's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nomad.backends.base import Backend, ClusterInfo, ClusterState, LaunchSpec, Offer
from nomad.backends.skypilot.backend import SkyPilotBackend
from nomad.backends.skypilot.errors import translate
from nomad.backends.ssh import node_pool
from nomad.config.schema import SSHBackendConfig
from nomad.errors import NomadError


class SSHBackend(Backend):
    """One SkyPilot SSH node pool built from ``infra.ssh``."""

    name = "ssh"

    def __init__(
        self,
        cfg: SSHBackendConfig,
        data_dir: Path,
        *,
        pools_path: Path = node_pool.DEFAULT_POOLS_PATH,
        sdk: Any = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.pools_path = pools_path
        self.sky = SkyPilotBackend(sdk=sdk)

    def prepare(self) -> Path:
        """Write (merge) and validate the pool config, plus the ssh config snippet if needed."""
        entry = node_pool.pool_config(self.cfg)
        node_pool.validate_with_skypilot(self.cfg.pool, entry)
        snippet = node_pool.ssh_config_snippet(self.cfg)
        if snippet:
            (self.data_dir / "ssh").mkdir(parents=True, exist_ok=True)
            (self.data_dir / "ssh" / f"{self.cfg.pool}.conf").write_text(snippet)
        return node_pool.write(
            self.pools_path, node_pool.merge_into(self.pools_path, self.cfg.pool, entry)
        )

    def plan(self, spec: LaunchSpec) -> list[Offer]:
        """One offer: the pool, at the cheapest configured host price."""
        price = min((h.price_per_hour for h in self.cfg.hosts), default=0.0)
        gpu = spec.gpus[0] if spec.gpus else "GPU"
        return [Offer("ssh", self.cfg.pool, None, gpu, spec.gpu_count, price, False)]

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Prepare the pool, ``sky ssh up`` it, then launch the task on ``ssh/<pool>``."""
        self.prepare()
        try:
            self.sky.sdk.get(self._ssh_up()(infra=self.cfg.pool))
        except Exception as exc:
            raise translate(exc, cluster=spec.cluster_name) from exc
        info = self.sky.launch(spec, offer or self.plan(spec)[0])
        info.backend = self.name
        return info

    def _ssh_up(self) -> Any:
        """``sky ssh up`` lives in ``sky.client.sdk`` (not re-exported by ``sky``)."""
        fn = getattr(self.sky.sdk, "ssh_up", None)
        if fn is None:
            import importlib

            fn = importlib.import_module("sky.client.sdk").ssh_up
        return fn

    def status(self, cluster_name: str) -> ClusterInfo:
        """SkyPilot's view of the cluster on the pool."""
        info = self.sky.status(cluster_name)
        info.backend = self.name
        return info

    def startup_failure(self, cluster_name: str) -> str | None:
        """SkyPilot's verdict while the servers start: a cluster it marks failed (node lost,
        runtime broken) or no longer has cannot come up. A status call that fails says nothing
        (the wake goes on). A ComfyUI exiting inside the job is left to the health deadline and
        the node's watchdog: SkyPilot keeps the cluster UP then."""
        try:
            info = self.status(cluster_name)
        except NomadError:
            return None
        if info.state is ClusterState.FAILED:
            return f"SkyPilot marks {cluster_name} failed: {info.detail or 'no reason given'}"
        if info.state is ClusterState.GONE:
            return f"{cluster_name} vanished from the SSH pool while starting"
        return None

    def teardown(self, cluster_name: str) -> None:
        """``sky down`` (idempotent); the pool itself stays for the next launch."""
        self.sky.teardown(cluster_name)
