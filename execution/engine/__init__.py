"""The execution engine: a signal becomes orders at the exchange, exactly once and in order.

One module per stage, around one run object (docs/architecture.md):

    worker   — how a worker process runs signals: pool threads send, followers follow
    execute  — one run of one signal through the stages, in order
    follow   — an acknowledged order to its final state
    send     — one order to the venue exactly once; resolving unclear outcomes
    plan     — a signal's legs under its strategy's settings (also "replay on paper")
    claim    — who owns a run (conditional claim, lease, fencing token) and how it ends
    ledger   — what the venue says, recorded: order status, fills, positions
    pacing   — this process's sends go before its follow-ups
    statements — the hot path's SQL
    run      — the Run dataclass every stage takes

Modules import downward only (lint-imports checks it).
"""

from .worker import signal_execute

__all__ = ["signal_execute"]
