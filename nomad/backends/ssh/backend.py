"""``SSHBackend``: rented boxes reachable by SSH, launched through SkyPilot's SSH node pools.

nomad writes the pool into ``~/.sky/ssh_node_pools.yaml``, validates it with
SkyPilot's own checks, brings the pool up (``sky ssh up``), then launches the
same task as the skypilot backend pinned to ``infra: ssh/<pool>``. Status and
teardown are SkyPilot's.
"""

from __future__ import annotations

from dataclasses import replace
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
        """One offer per kind of box in the pool (GPU model x count), cheapest first.

        Each host carries its own GPU, count and $/hour (``infra.ssh.hosts``), so a
        rented 2xRTX 5090 and an on-prem RTX 4090 in one pool are two offers at
        their own prices. SkyPilot schedules a task onto any node of the pool that
        has the GPUs it asks for, so hosts of the same kind are one offer priced
        at the dearest of them (recorded spend is never below what was paid).
        A host without ``gpu`` uses the first of ``infra.gpus`` (the old one-type pool).
        """
        return pool_offers(self.cfg, spec)

    def launch(self, spec: LaunchSpec, offer: Offer | None = None) -> ClusterInfo:
        """Prepare the pool, ``sky ssh up`` it, then launch the task on ``ssh/<pool>``."""
        self.prepare()
        try:
            self.sky.sdk.get(self._ssh_up()(infra=self.cfg.pool))
        except Exception as exc:
            raise translate(exc, cluster=spec.cluster_name) from exc
        offer = offer or self.plan(spec)[0]
        # the box's own GPU count: one ComfyUI (endpoint) per GPU it has
        spec = replace(spec, gpus=(offer.gpu,), gpu_count=offer.gpu_count)
        info = self.sky.launch(spec, offer)
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


def pool_offers(cfg: SSHBackendConfig, spec: LaunchSpec) -> list[Offer]:
    """The offers of one SSH pool (see :meth:`SSHBackend.plan`); pure, no SkyPilot call."""
    kinds: dict[tuple[str, int], float] = {}
    for h in cfg.hosts:
        gpu = h.gpu or (spec.gpus[0] if spec.gpus else "GPU")
        count = h.gpu_count or max(1, spec.gpu_count)
        kinds[(gpu, count)] = max(kinds.get((gpu, count), 0.0), h.price_per_hour)
    offers = [
        Offer("ssh", cfg.pool, None, gpu, count, price, False)
        for (gpu, count), price in kinds.items()
    ]
    offers.sort(key=lambda o: o.price_per_hour)  # stable: config order among equal prices
    return offers
