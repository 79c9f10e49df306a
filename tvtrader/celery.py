"""The Celery app: JSON only, Redis broker, configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")

app = Celery("tvtrader")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.task_routes = {
    "execution.execute_signal": {"queue": "orders"},
    # Telegram/Discord deliveries: their own queue, so a slow or dead channel never delays an order.
    "notifications.deliver": {"queue": "notifications"},
}
app.conf.beat_schedule = {
    # The Signal table is the outbox: anything committed but never started is re-queued.
    "signals-sweep": {"task": "signals.sweep", "schedule": 10.0},
    # Proves the broker, beat and a worker are all alive (read by /health).
    "worker-heartbeat": {"task": "signals.heartbeat", "schedule": 10.0},
    # Exchange vs database: resolves unknown orders, reports drift.
    "reconcile": {"task": "execution.reconcile", "schedule": 300.0},
    # Strategies (or the whole webhook) that stopped receiving alerts; notifies on change.
    "ops-check-silence": {"task": "ops.check_silence", "schedule": 300.0},
    # TLS certificates of CERTIFICATE_CHECK_HOSTS (nothing to do when unset).
    "ops-check-certificates": {"task": "ops.check_certificates", "schedule": 6 * 3600.0},
}
