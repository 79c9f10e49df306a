"""Periodic housekeeping for intake: the outbox sweeper and the worker heartbeat."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="signals.sweep", ignore_result=True, time_limit=60)
def sweep() -> int:
    from .outbox import signals_sweep

    return signals_sweep()


@shared_task(name="signals.heartbeat", ignore_result=True, time_limit=10)
def heartbeat() -> None:
    from tvtrader.redisconn import key, redis_client

    from .selectors import HEARTBEAT_KEY

    redis_client().set(key(HEARTBEAT_KEY), str(time.time()), ex=3600)
