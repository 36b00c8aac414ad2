"""Carrying out stop vs down for an idle cluster (the decision itself is pure: nomad.placement).

Why its own module: the autoscaler only says "this cluster is idle"; whether
to keep its disk (``stop``: pay storage, skip the 30-40 GB re-pull next time)
or tear it down (``down``: pay the re-pull at the GPU's price) is a money
decision with inputs from three places — the backend (can it stop?), the
ledger (the cluster's $/hour), the queue and history (arrivals, recorded cold
starts) — and must end with the ledger telling the truth either way.

A stopped cluster's ledger row is closed (the GPU stopped billing) with the
decision and its reason as the row's detail; the disk's storage is not in
the ledger. The next wake launches the same cluster name, which SkyPilot
restarts from the kept disk. A stop that fails or does not end STOPPED falls
back to a confirmed teardown, so nothing is left running.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nomad.backends.base import Backend, ClusterState, SupportsStop
from nomad.errors import BackendError
from nomad.placement import STOPPED, IdleRule, StopOrDown
from nomad.serve.log import event
from nomad.serve.runner import error_text

if TYPE_CHECKING:
    from nomad.serve.autoscaler import BackendOps


def can_stop(backend: Backend, name: str) -> bool:
    """Whether ``backend`` can stop ``name`` (a fleet asks the member holding it)."""
    if not isinstance(backend, SupportsStop):
        return False
    ask = getattr(backend, "can_stop", None)
    return bool(ask(name)) if callable(ask) else True


def retire_idle(
    ops: BackendOps, name: str, arrivals: list[float], cold_start_s: float | None
) -> StopOrDown:
    """Decide (``ops.idle_rule``), then stop or tear down; returns the decision carried out."""
    book = ops.ledger
    row = book.find_open(name) if book is not None else None
    price = row.price_per_hour if row is not None else 0.0
    rule = ops.idle_rule or IdleRule(on_idle="down")
    decision = rule.decide(
        can_stop=can_stop(ops.backend, name),
        disk_gb=ops.spec.disk_gb,
        price_per_hour=price,
        arrivals=arrivals,
        recorded_cold_start_s=cold_start_s,
    )
    if decision.action == "stop":
        try:
            _stop(ops, name, decision)
            return decision
        except Exception as exc:  # a cloud that cannot stop, or a stop that did not stick
            event("cluster.stop_failed", level=logging.WARNING, cluster=name, error=error_text(exc))
            decision = StopOrDown(
                "down",
                decision.keep_cost,
                decision.repull_cost,
                f"stop failed ({error_text(exc)}); torn down instead",
            )
    ops.down(name, reason=f"idle: down: {decision.reason}")
    return decision


def _stop(ops: BackendOps, name: str, decision: StopOrDown) -> None:
    backend = ops.backend
    assert isinstance(backend, SupportsStop)
    backend.stop(name)
    info = ops.backend.status(name)
    if info.state is not ClusterState.STOPPED:
        raise BackendError(f"{name} is {info.state.value} after stop, not stopped")
    book = ops.ledger
    row = book.find_open(name) if book is not None else None
    if book is not None and row is not None:
        book.confirm_gone(row.id, f"{STOPPED}: {decision.reason}")
    if ops.data_dir is not None:
        from nomad.backends import state

        state.remove(ops.data_dir, name)  # `nomad run` must not send work to a stopped node
