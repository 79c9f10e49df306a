"""Periodic housekeeping for intake: the outbox sweeper (the worker's heartbeat is
execution.heartbeat)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="signals.sweep", ignore_result=True, time_limit=60)
def sweep() -> int:
    from .outbox import signals_sweep

    return signals_sweep()
