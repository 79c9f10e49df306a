"""Celery tasks for execution: thin shells that load by id and call the engine."""

from __future__ import annotations

import logging
import threading

from celery import shared_task
from celery.signals import worker_ready, worker_shutting_down

logger = logging.getLogger("tvtrader.execution")


@shared_task(name="execution.execute_signal", ignore_result=True, acks_late=True)
def execute_signal(signal_id: int) -> None:
    # No Celery retry here on purpose: the engine never resends an order blindly, and a
    # signal it could not finish stays leased in the database for the sweeper to resume.
    from .engine.worker import signal_execute

    signal_execute(signal_id=signal_id, follow_in_background=True)


@shared_task(name="execution.reconcile", ignore_result=True)
def reconcile() -> int:
    """Periodic reconciliation (Celery beat): resolves unknown orders, reports drift."""
    from tvtrader.ops.notifications import notify_reconcile_drift

    from .reconcile import reconcile_all, reports_record

    reports = reconcile_all(include_paper=False)
    reports_record(reports)
    for report in reports:
        if report.unresolved:
            notify_reconcile_drift(
                account_label=report.account,
                lines=[
                    f"{d.kind} {d.subject}: ours {d.ours}, exchange {d.theirs} ({d.action})" for d in report.unresolved
                ],
            )
    return sum(len(r.unresolved) for r in reports)


@shared_task(name="execution.protection_sweep", ignore_result=True, time_limit=120)
def protection_sweep() -> dict:
    """Protective orders the engine did not finish in-process: placed, resolved, cancelled,
    or looked at (a stop the venue fired is booked). Celery beat, every few seconds."""
    from .engine.protect import protection_sweep as sweep

    return sweep()


_warm_barrier: threading.Barrier | None = None
_warm_lock = threading.Lock()
_threads_to_warm = 0
_threads_warmed = threading.Event()
# Set once this worker is warm (markets loaded, streams started, pool threads prepared):
# only then does it report itself alive, so /health never turns green on a cold worker.
_ready = threading.Event()


@shared_task(name="execution.warm_thread", ignore_result=True)
def warm_thread(account_ids: list[int]) -> None:
    """Warm one pool thread (engine.worker.thread_warm)."""
    global _threads_to_warm
    from .engine.worker import thread_warm

    try:
        thread_warm(account_ids, _warm_barrier)
    finally:
        with _warm_lock:
            _threads_to_warm -= 1
            if _threads_to_warm <= 0:
                _threads_warmed.set()


@shared_task(name="execution.heartbeat", ignore_result=True, time_limit=10)
def heartbeat() -> None:
    """Proves the broker, beat and a warm worker of this install are alive (read by /health)."""
    if _ready.is_set():
        _heartbeat_write()


def _heartbeat_write() -> None:
    import json
    import time

    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.processes import lease_owner
    from tvtrader.redisconn import key, redis_client

    redis_client().set(key(HEARTBEAT_KEY), json.dumps({"at": time.time(), "owner": lease_owner()}), ex=3600)


@worker_shutting_down.connect
def _release_followed_signals(**_kwargs) -> None:
    from .engine.worker import followers_stop

    _ready.clear()
    try:  # a stopping worker is not a live one: /health must not count on its last beat
        import json

        from signals.selectors import HEARTBEAT_KEY
        from tvtrader.processes import lease_owner
        from tvtrader.redisconn import key, redis_client

        raw = redis_client().get(key(HEARTBEAT_KEY))
        if raw and json.loads(raw).get("owner") == lease_owner():
            redis_client().delete(key(HEARTBEAT_KEY))
    except Exception:
        logger.debug("heartbeat not removed", exc_info=True)
    followers_stop()


@worker_ready.connect
def _warm_on_start(**_kwargs) -> None:
    """Load exchange markets before the first alert needs them, and pick up anything the
    broker lost while no worker was running."""
    from signals.outbox import signals_sweep

    from .engine.worker import gateways_warm
    from .reconcile import reconcile_all

    try:
        warmed = gateways_warm()
        _prewarm_threads()
        # Resolve what the exchange did with orders left in flight before trading resumes.
        drift = sum(len(r.unresolved) for r in reconcile_all(include_paper=False))
        if drift:
            logger.warning("event=startup_reconcile_drift unresolved=%d", drift)
        requeued = signals_sweep(older_than_seconds=0)
        # A worker killed between an entry's fill and its stop's placement: placed now.
        protection_sweep.delay()
        logger.info("event=worker_started gateways_warmed=%d signals_requeued=%d", warmed, requeued)
    except Exception:
        logger.exception("event=worker_start_hook_failed")
    finally:
        from django.db import connection

        # This (main) thread takes no tasks: its connection would sit idle for CONN_MAX_AGE,
        # one more of the stack's budget (docs/execution.md).
        connection.close()
    threading.Thread(target=_when_warm, name="tvtrader-warm", daemon=True).start()


def _when_warm() -> None:
    """Once the pool threads are prepared: freeze what is loaded so far out of the garbage
    collector's full passes (ccxt's markets: a full collection over them paused every thread
    for 0.2–0.6 s), then report this worker alive."""
    import gc

    _threads_warmed.wait(timeout=30)
    gc.collect()
    gc.freeze()
    _ready.set()
    # Logged before the first heartbeat: `make run` prints its banner once /health sees that
    # beat, and the banner must stay the last thing on the screen.
    logger.info("event=worker_ready")
    try:
        _heartbeat_write()
    except Exception:
        logger.warning("event=heartbeat_failed", exc_info=True)


def _prewarm_threads() -> None:
    """Occupy WORKER_PREWARM pool threads at once with `warm_thread` tasks (see there)."""
    from django.conf import settings

    from .engine.worker import traded_account_ids

    global _warm_barrier, _threads_to_warm
    count = settings.WORKER_PREWARM
    if count <= 0:
        _threads_warmed.set()
        return
    _threads_to_warm = count
    _warm_barrier = threading.Barrier(count)
    ids = traded_account_ids()
    for _ in range(count):
        warm_thread.apply_async(args=[ids], queue="orders")
