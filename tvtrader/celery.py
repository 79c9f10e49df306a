"""The Celery app: JSON only, Redis broker, configured from Django settings (CELERY_*)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")

app = Celery("tvtrader")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

app.conf.task_routes = {
    "execution.execute_signal": {"queue": "orders"},
}
app.conf.beat_schedule = {
    # The Signal table is the outbox: anything committed but never started is re-queued.
    "signals-sweep": {"task": "signals.sweep", "schedule": 10.0},
    # Proves the broker, beat and a worker are all alive (read by /health).
    "worker-heartbeat": {"task": "signals.heartbeat", "schedule": 10.0},
    # Exchange vs database: resolves unknown orders, reports drift.
    "reconcile": {"task": "execution.reconcile", "schedule": 300.0},
}
