"""The outbox: the `Signal` table is the source of truth, the broker only carries wake-ups.

An accepted alert is committed before the webhook answers; `signal_enqueue` then sends the
execution task (after the commit, never before). `wake_next` queues the signal waiting
behind one that finished. The sweeper (`signals_sweep`, every few seconds from beat and at
worker start-up) re-queues what the broker lost: signals committed but never started, and
runs whose lease expired or whose worker process is gone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from strategies.models import Strategy
from tvtrader.logvalue import logvalue

from . import ordering
from .models import Signal
from .selectors import strategy_for_intake

logger = logging.getLogger("tvtrader.signals")

EXECUTE_TASK = "execution.execute_signal"

_broker_down_until = 0.0
_publisher = threading.local()


def _producer():
    """A kombu producer kept per process and thread. `.delay()` builds a connection and
    producer for every publish (~0.7 ms); reusing one halves that. Created lazily, so a
    gunicorn worker forked from a preloaded master never shares its parent's socket."""
    producer = getattr(_publisher, "producer", None)
    if producer is None or _publisher.pid != os.getpid():
        from tvtrader.broker import publishing_transport
        from tvtrader.celery import app

        transport = publishing_transport(app.conf.broker_write_url or app.conf.broker_url or "")
        producer = app.amqp.Producer(app.connection_for_write(transport=transport))
        _publisher.producer, _publisher.pid = producer, os.getpid()
    return producer


def _producer_discard() -> None:
    producer = getattr(_publisher, "producer", None)
    _publisher.producer = None
    if producer is not None:
        try:
            producer.connection.release()
        except Exception:  # already broken; nothing to release
            pass


def intake_warm() -> None:
    """Make a freshly started web worker's first alert as fast as its hundredth: open the
    database connection, plan the strategy lookup on it, and connect the kept broker
    producer. Measured cold: the first alert per gunicorn worker after a start took ~10 ms
    more to commit and ~35 ms more to reach a worker. Called from gunicorn's
    `post_worker_init` (deploy/gunicorn.conf.py); a failure here only means a cold start."""
    try:
        connection.ensure_connection()
        for _ in range(2):
            strategy_for_intake(strategy_key="-")
    except Exception as exc:
        logger.warning("event=intake_warm_failed part=database error=%s", type(exc).__name__)
    try:
        from tvtrader.celery import app

        # Celery builds its task registry, result backend and routes on first use.
        app.finalize(auto=True)
        app.backend  # noqa: B018 (the property loads it)
        amqp = app.amqp
        amqp.send_task_message  # noqa: B018 (built on first use)
        producer = _producer()
        # One immediate retry at most: a broker that is down at boot must not hold the first
        # alert (which queues behind this warm-up) for kombu's default 2 s back-off.
        producer.connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
        for queue in amqp.queues.values():  # declared once per connection, on first publish
            producer.maybe_declare(queue)
    except Exception as exc:
        _producer_discard()
        logger.warning("event=intake_warm_failed part=broker error=%s", type(exc).__name__)


def signal_enqueue(signal_id: int, strategy_key: str = "-") -> bool:
    """Send the execution wake-up for a committed signal. Never raises: when the broker is
    unreachable the sweeper re-queues from the database later. After a failure, further
    attempts are skipped for a few seconds so a dead broker cannot slow every request."""
    global _broker_down_until
    if time.monotonic() < _broker_down_until:
        return False
    from tvtrader.celery import app

    try:
        # By name: the intake never imports the engine (the worker has the task).
        if settings.EXECUTION_QUEUE_PER_ACCOUNT:
            from execution.routing import queue_for_signal

            app.send_task(EXECUTE_TASK, (signal_id,), producer=_producer(), queue=queue_for_signal(signal_id))
        else:
            app.send_task(EXECUTE_TASK, (signal_id,), producer=_producer())
    except Exception as exc:  # kombu raises a variety of connection errors
        _producer_discard()
        _broker_down_until = time.monotonic() + 5.0
        logger.warning(
            "event=enqueue_failed strategy=%s signal=%s error=%s", logvalue(strategy_key), signal_id, type(exc).__name__
        )
        return False
    return True


def leases_of_dead_workers_release() -> int:
    """Expire at once the leases held by worker processes of this host that no longer exist
    (killed without a chance to release them: SIGKILL, out of memory), so the sweep below
    resumes their signals now rather than when the lease runs out. Leases of live processes,
    and of other hosts, are left alone. Returns how many were released."""
    from tvtrader.processes import host_key, owner_is_gone

    now = timezone.now()
    held = Signal.objects.filter(
        status=Signal.Status.PROCESSING, lease_until__gte=now, lease_owner__startswith=host_key() + "|"
    )
    gone = [owner for owner in set(held.values_list("lease_owner", flat=True)) if owner_is_gone(owner)]
    if not gone:
        return 0
    released = held.filter(lease_owner__in=gone).update(lease_until=now - timedelta(milliseconds=1))
    if released:
        logger.warning("event=dead_worker_leases_released signals=%d workers=%s", released, ",".join(sorted(gone)))
    return released


def signals_sweep(*, older_than_seconds: int | None = None, limit: int = 500) -> int:
    """Re-queue what the broker lost (a broker down or restarted empty, a worker lost): the
    signals that could run now — committed but never started, or processing under an expired
    lease (or a dead worker's) — and only the first of each market (signals.ordering): the
    ones behind it follow it when it finishes, so a backlog drains at the engine's pace
    instead of waking every signal at once. Returns how many were re-queued."""
    try:
        leases_of_dead_workers_release()
    except Exception:  # never let this stop the sweep itself
        logger.exception("event=dead_worker_check_failed")
    now = timezone.now()
    if older_than_seconds is None:
        older_than_seconds = settings.SIGNAL_REQUEUE_AFTER_SECONDS
    cutoff = now - timedelta(seconds=older_than_seconds)
    vendor = connection.vendor
    sql = (
        f"SELECT s.id, s.strategy_key FROM {Signal._meta.db_table} s"
        f" JOIN {Strategy._meta.db_table} st ON st.id = s.strategy_id"
        " WHERE ((s.status = %s AND s.committed_at < %s AND (s.enqueued_at IS NULL OR s.enqueued_at < %s))"
        "  OR (s.status = %s AND s.lease_until < %s))"
        f" AND {ordering.not_held_sql('s', vendor)}"
        f" AND NOT EXISTS (SELECT 1 {ordering.earlier_pending_sql('s', 'st')})"
        " ORDER BY s.received_at, s.id LIMIT %s"
    )
    params = [Signal.Status.ACCEPTED, cutoff, cutoff, Signal.Status.PROCESSING, now]
    params += [*ordering.hold_params(now=now, vendor=vendor), *ordering.pending_params(), limit]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    sent = 0
    for signal_id, strategy_key in rows:
        if not signal_enqueue(signal_id, strategy_key):
            break
        Signal.objects.filter(pk=signal_id).update(enqueued_at=now, enqueue_count=F("enqueue_count") + 1)
        sent += 1
        logger.info("event=signal_requeued strategy=%s signal=%s", logvalue(strategy_key), signal_id)
    return sent


def next_in_line(signal: Signal) -> list[tuple[int, str]]:
    """The signals that may be waiting for `signal` now that it is final: the next pending
    one of its market (by arrival), or, when it was a close_all or the strategy is pinned to
    one symbol, the next one of every market. [(id, strategy key)]."""
    pending = Signal.objects.filter(
        strategy_id=signal.strategy_id, subscription_id=signal.subscription_id, status=Signal.Status.ACCEPTED
    ).exclude(pk=signal.pk)
    # The engine's signal carries its strategy already (a query fewer per finished signal).
    strategy = Signal._meta.get_field("strategy").get_cached_value(signal, default=None)
    pinned = (
        bool(strategy.symbol_override)
        if strategy is not None
        else Strategy.objects.filter(pk=signal.strategy_id).exclude(symbol_override="").exists()
    )
    everything = signal.action == "close_all" or pinned
    if not everything:
        key = ordering.market_key(signal.ticker)
        pending = pending.filter(Q(ticker__in=[key, f"{key}.P"]) | Q(action="close_all"))
    rows = pending.order_by("received_at", "id").values_list("pk", "ticker", "action", "strategy_key")[:100]
    found: list[tuple[int, str]] = []
    seen: set[str] = set()
    for signal_id, ticker, action, strategy_key in rows:
        key = "*" if action == "close_all" else ordering.market_key(ticker)
        if key not in seen:
            seen.add(key)
            found.append((signal_id, strategy_key))
        if key == "*" or not everything:
            break  # nothing after a close_all (or after the one market's next) can run yet
    return found


def wake_next(signal: Signal, *, skip: frozenset[int] = frozenset()) -> int:
    """Queue what may run now that `signal` is final (next_in_line), except the ids in
    `skip` (a worker runs those itself). Waking one that still has to wait is harmless: its
    claim refuses it. Returns how many were queued."""
    woken = 0
    for signal_id, strategy_key in next_in_line(signal):
        if signal_id not in skip and signal_enqueue(signal_id, strategy_key or "-"):
            woken += 1
    return woken
