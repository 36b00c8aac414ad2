"""Way 8 of the leaks: the admin's /down must stop the cluster serve is running, /up must wake one.

Real: the PTB Application against BotApiStub (the bot harness), the SQLite queue
and its cluster ledger, serve's autoscaler loop and lease, LaunchAdmin. Double:
FakeBackend (launches nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nomad.backends.base import LaunchSpec
from nomad.config.schema import NomadConfig
from nomad.queue._sql import SqlQueue
from nomad.queue.lease import LeaderLease
from nomad.queue.ledger import ClusterLedger
from nomad.serve.autoscaler import Autoscaler, BackendOps
from nomad.serve.policy import Policy, PolicyConfig
from nomad.testing.backend import FakeBackend
from nomad.testing.botapi import BotApiStub
from nomad_bot.run import LaunchAdmin
from tests.bot.conftest import ADMIN


class Pool:
    """Stands in for serve's worker pool."""

    def start_cluster(self, rt: Any) -> None:
        pass

    async def stop_cluster(self, name: str) -> None:
        pass


async def test_way8_admin_down_stops_serves_cluster_and_up_wakes_one_through_serve(
    botapi: BotApiStub, make_bot: Any, queue: Any, tmp_path: Path
) -> None:
    """/down tears down demo-serve (serve's, not nomad-demo) and holds launches; /up has serve wake a GPU."""
    assert isinstance(queue, SqlQueue)
    book = ClusterLedger(queue, "demo")
    fake = FakeBackend(price_per_hour=1.0)
    ops = BackendOps(
        fake, LaunchSpec(cluster_name="x", image_ref=""), None, health_timeout_s=None, ledger=book
    )
    policy = Policy(PolicyConfig(idle_seconds=600.0, drain_seconds=5.0, base_name="demo-serve"))
    scaler = Autoscaler(queue, ops, policy, Pool(), status_every=0.0, ledger=book)
    LeaderLease(queue, "demo").acquire()  # this is the project's running serve
    await scaler.load()
    job = queue.enqueue("w", {})
    await scaler.step()
    await scaler.settle()
    assert set(fake.clusters) == {"demo-serve"}
    cfg = NomadConfig.model_validate({"project": "demo"})
    admin = LaunchAdmin(cfg, tmp_path, backend_for=lambda _name: fake)
    async with make_bot(admin=admin):
        botapi.user_sends_text(ADMIN, "/down")
        await botapi.wait_for_text(ADMIN, "Down: demo-serve")
        assert fake.clusters == {} and book.open_rows() == []
        await scaler.step()  # serve sees its cluster closed in the ledger and does not relaunch
        await scaler.settle()
        assert scaler.policy.clusters == {} and "launch" not in [c[0] for c in fake.calls[-3:]]
        assert "stopped the GPU" in (queue.get(job.id).detail or "")
        botapi.user_sends_text(ADMIN, "/up")
        await botapi.wait_for_text(ADMIN, "is waking a GPU")
        await scaler.step()
        await scaler.settle()
    assert [n for m, n in fake.calls if m == "launch"] == ["demo-serve", "demo-serve-2"]
    (row,) = book.open_rows()
    assert row.name == "demo-serve-2" and row.requested_by == "autoscaler"
