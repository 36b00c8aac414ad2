"""Scale to zero: the autoscaler (pure policy + loop), workers, and ``nomad serve``.

Public entry points: :func:`nomad.serve.server.serve` (one asyncio process:
autoscaler + workers), :func:`nomad.serve.summary.queue_summary` (what
``nomad status`` shows), :class:`nomad.serve.policy.Policy` (the rules).
"""
