"""Reads shared by views, admin, commands and tasks."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone

from strategies.models import Strategy
from tvtrader.processes import owner_is_gone
from tvtrader.redisconn import key, redis_client

from .models import Signal

HEARTBEAT_KEY = "worker:heartbeat"

# Only what intake decides with, and the three kill switches, in one statement. Written as
# SQL because this is the hottest query in the project: the equivalent queryset
# (select_related + annotate(Exists)) spends ~1.4 ms of CPU per alert compiling itself,
# five times the cost of the query (docs/performance.md). Other fields load on access.
_INTAKE_STRATEGY_SQL: str | None = None


def _intake_strategy_sql() -> str:
    global _INTAKE_STRATEGY_SQL
    if _INTAKE_STRATEGY_SQL is None:
        from execution.models import ExchangeAccount
        from strategies.models import TradingControl

        _INTAKE_STRATEGY_SQL = (
            "SELECT s.id, s.strategy_id, s.enabled, s.halted, s.passphrase_hash, s.allowed_actions,"
            " s.max_signal_age_seconds, s.dedup_window_seconds, s.account_id, s.fans_out,"
            " a.halted AS account_halted, a.label AS account_label,"
            f" EXISTS (SELECT 1 FROM {TradingControl._meta.db_table} g WHERE g.id = 1 AND g.halted) AS global_halted"
            f" FROM {Strategy._meta.db_table} s"
            f" LEFT JOIN {ExchangeAccount._meta.db_table} a ON a.id = s.account_id"
            " WHERE s.strategy_id = %s"
        )
    return _INTAKE_STRATEGY_SQL


def strategy_for_intake(*, strategy_key: object) -> Strategy | None:
    """The strategy an alert names, with `account_halted`, `account_label` and
    `global_halted` read in the same query (kill switches are never cached)."""
    if not isinstance(strategy_key, str) or not strategy_key.strip() or len(strategy_key) > 64:
        return None
    for strategy in Strategy.objects.raw(_intake_strategy_sql(), [strategy_key.strip()]):
        strategy.global_halted = bool(strategy.global_halted)
        strategy.account_halted = bool(strategy.account_halted)
        return strategy
    return None


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
        heartbeat = client.get(key(HEARTBEAT_KEY))
    except Exception as exc:
        checks["broker"] = {"ok": False, "error": type(exc).__name__}
    if heartbeat is not None:
        try:
            beat = json.loads(heartbeat)
        except ValueError:
            beat = {"at": 0.0}
        age = time.time() - float(beat.get("at") or 0)
        checks["worker"] = {"ok": age <= settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS, "heartbeat_age_s": round(age, 1)}
        if beat.get("owner") and owner_is_gone(beat["owner"]):
            # The worker that wrote it was killed (a restart): its last beat proves nothing.
            checks["worker"] = {"ok": False, "error": "the worker that last reported is gone"}
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
