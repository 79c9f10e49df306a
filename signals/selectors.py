"""Reads shared by views, admin, commands and tasks."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from .models import Signal

HEARTBEAT_KEY = "tvtrader:worker:heartbeat"

_redis_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One client per process with short timeouts: health checks must answer quickly."""
    global _redis_client
    if _redis_client is None:
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=0.5, socket_timeout=1.0, health_check_interval=30
        )
    return _redis_client


def health_report() -> dict[str, Any]:
    report: dict[str, Any] = {"ok": True, "checks": {}}
    checks = report["checks"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    heartbeat = None
    try:
        client = redis_client()
        client.ping()
        checks["broker"] = {"ok": True}
        heartbeat = client.get(HEARTBEAT_KEY)
    except Exception as exc:
        checks["broker"] = {"ok": False, "error": type(exc).__name__}
    if heartbeat is not None:
        age = time.time() - float(heartbeat)
        checks["worker"] = {"ok": age <= settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS, "heartbeat_age_s": round(age, 1)}
    else:
        checks["worker"] = {"ok": False, "error": "no heartbeat from a worker"}
    if checks["database"]["ok"]:
        try:
            last = Signal.objects.aggregate(last=Max("received_at"))["last"]
            report["last_signal_age_s"] = round((timezone.now() - last).total_seconds(), 1) if last else None
            backlog_cutoff = timezone.now() - timedelta(seconds=60)
            report["stuck_signals"] = Signal.objects.filter(
                status__in=Signal.PENDING_STATUSES, received_at__lt=backlog_cutoff
            ).count()
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
    report["ok"] = all(c["ok"] for c in checks.values())
    return report
