"""The Celery app: JSON only, Redis broker, configured from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")

app = Celery("tvtrader")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fix-up closes every database connection before and after each task unless
# this is set: with a thread pool that meant a fresh PostgreSQL connection (~10 ms) for every
# order. Connections are kept instead, and checked before each task (below).
app.conf["CELERY_DB_REUSE_MAX"] = 10**9


@task_prerun.connect
def _usable_db_connections(**_kwargs) -> None:
    """What Django does at each request start, for tasks: drop connections that errored or
    outlived CONN_MAX_AGE, and health-check the rest on first use (a PostgreSQL restart
    must not leave a worker thread with a dead connection)."""
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _short_interpreter_switch(**_kwargs) -> None:
    """Pool threads spend most of their time waiting on the exchange and the database. When
    a reply arrives while another thread runs Python (following an earlier order), the
    waiting thread gets the interpreter lock only at the next forced switch: 5 ms by
    default, paid again at every round trip of an order on its way out. A shorter interval
    bounds that wait (docs/performance.md)."""
    import sys

    sys.setswitchinterval(float(os.environ.get("WORKER_SWITCH_INTERVAL", "0.0005")))
    # On a small VPS the worker and the web workers share the cores. TradingView abandons an
    # alert unanswered after 3 s, so under a burst the webhook's answers come first: the
    # worker runs a little behind the web workers in the scheduler's eyes.
    nice = int(os.environ.get("WORKER_NICE", "5"))
    if nice:
        try:
            os.nice(nice)
        except OSError:
            pass


app.conf.task_routes = {
    "execution.execute_signal": {"queue": "orders"},
    # Telegram/Discord deliveries: their own queue, so a slow or dead channel never delays an order.
    "notifications.deliver": {"queue": "notifications"},
    # Telegram commands: a long poll holds a notifications thread, never an order's.
    "ops.telegram_poll": {"queue": "notifications"},
}
app.conf.beat_schedule = {
    # The Signal table is the outbox: anything committed but never started is re-queued.
    "signals-sweep": {"task": "signals.sweep", "schedule": 5.0},
    # Protective orders left pending, unclear, to cancel, or fired at the exchange.
    "protection-sweep": {"task": "execution.protection_sweep", "schedule": 5.0},
    # Proves the broker, beat and a warm worker are all alive (read by /health).
    "worker-heartbeat": {"task": "execution.heartbeat", "schedule": 10.0},
    # Exchange vs database: resolves unknown orders, reports drift.
    "reconcile": {"task": "execution.reconcile", "schedule": 300.0},
    # Strategies (or the whole webhook) that stopped receiving alerts; notifies on change.
    "ops-check-silence": {"task": "ops.check_silence", "schedule": 300.0},
    # TLS certificates of CERTIFICATE_CHECK_HOSTS (nothing to do when unset).
    "ops-check-certificates": {"task": "ops.check_certificates", "schedule": 6 * 3600.0},
    # Telegram commands from the owner's chat (nothing to do unless TELEGRAM_COMMAND_CHAT_IDS
    # is set); one long poll at a time, so this is how soon a new poll starts after one ends.
    # Expiring: polls queued while no worker ran are dropped, not run one after another.
    "ops-telegram-poll": {"task": "ops.telegram_poll", "schedule": 3.0, "options": {"expires": 10}},
}
