"""Reads behind the admin dashboard: per-strategy state and activity, latency percentiles,
slippage, and the "needs attention" list. A fixed, small number of queries whatever the
history size (every query is bounded by a time window or an index)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from execution.models import Fill, Order, Position
from signals.models import Signal

from .halts import trading_state
from .models import Strategy, TradingControl

WINDOW = timedelta(hours=24)
STUCK_AFTER = timedelta(seconds=60)
ATTENTION_LIST_LIMIT = 20


@dataclass
class StrategyRow:
    strategy: Strategy
    state: str  # live / paper / halted / disabled / no account
    last_signal_at: datetime | None
    last_signal_age_s: float | None
    silent: bool
    signals: int = 0
    orders: int = 0
    fills: int = 0
    rejects: int = 0
    failures: int = 0
    sent_p50_ms: float | None = None
    sent_p95_ms: float | None = None
    fill_p50_ms: float | None = None
    fill_p95_ms: float | None = None
    positions: list[dict[str, Any]] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation, the same definition as PostgreSQL's percentile_cont."""
    if not values:
        return None
    values = sorted(values)
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] if 0 < q < 1 else values[-1]


def _is_postgres() -> bool:
    return connection.vendor == "postgresql"


def latency_percentiles(*, since: datetime) -> dict[int, dict[str, float | None]]:
    """p50/p95 of alert-to-order-sent and alert-to-fill per strategy, in milliseconds."""
    if _is_postgres():
        sql = """
            SELECT strategy_id,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - received_at)) * 1000),
              percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - received_at)) * 1000),
              percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (filled_at - received_at)) * 1000),
              percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (filled_at - received_at)) * 1000)
            FROM signals_signal
            WHERE received_at >= %s AND strategy_id IS NOT NULL AND sent_at IS NOT NULL
            GROUP BY strategy_id
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [since])
            return {
                row[0]: {
                    "sent_p50": row[1],
                    "sent_p95": row[2],
                    "fill_p50": row[3],
                    "fill_p95": row[4],
                }
                for row in cursor.fetchall()
            }
    samples: dict[int, tuple[list[float], list[float]]] = {}
    rows = Signal.objects.filter(received_at__gte=since, strategy__isnull=False, sent_at__isnull=False).values_list(
        "strategy_id", "received_at", "sent_at", "filled_at"
    )
    for strategy_id, received, sent, filled in rows:
        sent_ms, fill_ms = samples.setdefault(strategy_id, ([], []))
        sent_ms.append((sent - received).total_seconds() * 1000)
        if filled:
            fill_ms.append((filled - received).total_seconds() * 1000)
    return {
        sid: {
            "sent_p50": percentile(s, 0.5),
            "sent_p95": percentile(s, 0.95),
            "fill_p50": percentile(f, 0.5),
            "fill_p95": percentile(f, 0.95),
        }
        for sid, (s, f) in samples.items()
    }


def strategy_rows(*, now: datetime | None = None) -> tuple[list[StrategyRow], bool]:
    """Every strategy with its state and the last 24 hours of activity. Returns the rows
    and whether the global kill switch is engaged."""
    now = now or timezone.now()
    since = now - WINDOW
    global_halted = TradingControl.is_halted()
    last = Signal.objects.filter(strategy=OuterRef("pk")).order_by("-id")
    strategies = list(
        Strategy.objects.select_related("account").annotate(
            last_signal_at=Subquery(last.values("received_at")[:1]),
            last_price=Subquery(last.exclude(price__isnull=True).values("price")[:1]),
        )
    )
    signal_counts = {
        r["strategy_id"]: r
        for r in Signal.objects.filter(received_at__gte=since, strategy__isnull=False)
        .values("strategy_id")
        .annotate(
            n=Count("id"),
            rejects=Count("id", filter=Q(status__in=[Signal.Status.REJECTED, Signal.Status.BLOCKED])),
            failures=Count("id", filter=Q(status=Signal.Status.FAILED)),
        )
        .order_by()
    }
    order_counts = {
        r["strategy_id"]: r
        for r in Order.objects.filter(created_at__gte=since)
        .values("strategy_id")
        .annotate(n=Count("id"), rejects=Count("id", filter=Q(status=Order.Status.REJECTED)))
        .order_by()
    }
    fill_counts = {
        r["order__strategy_id"]: r["n"]
        for r in Fill.objects.filter(filled_at__gte=since)
        .values("order__strategy_id")
        .annotate(n=Count("id"))
        .order_by()
    }
    latencies = latency_percentiles(since=since)
    positions: dict[int, list[dict[str, Any]]] = {}
    for pos in Position.objects.filter(strategy__isnull=False).exclude(qty=0).order_by("symbol"):
        positions.setdefault(pos.strategy_id, []).append(pos)

    rows = []
    for strategy in strategies:
        last_at = strategy.last_signal_at
        age = (now - last_at).total_seconds() if last_at else None
        interval = strategy.expected_interval_minutes
        silent = bool(interval) and strategy.accepts_signals and (age is None or age > interval * 60)
        sc = signal_counts.get(strategy.pk, {})
        oc = order_counts.get(strategy.pk, {})
        lat = latencies.get(strategy.pk, {})
        row = StrategyRow(
            strategy=strategy,
            state=trading_state(strategy, global_halted=global_halted),
            last_signal_at=last_at,
            last_signal_age_s=age,
            silent=silent,
            signals=sc.get("n", 0),
            orders=oc.get("n", 0),
            fills=fill_counts.get(strategy.pk, 0),
            rejects=sc.get("rejects", 0) + oc.get("rejects", 0),
            failures=sc.get("failures", 0),
            sent_p50_ms=lat.get("sent_p50"),
            sent_p95_ms=lat.get("sent_p95"),
            fill_p50_ms=lat.get("fill_p50"),
            fill_p95_ms=lat.get("fill_p95"),
        )
        for pos in positions.get(strategy.pk, []):
            mark = strategy.last_price
            upnl = None
            if mark is not None and pos.avg_price is not None:
                upnl = (Decimal(mark) - pos.avg_price) * pos.qty
            row.positions.append({"position": pos, "mark": mark, "unrealised": upnl})
        rows.append(row)
    return rows, global_halted


def reconciliation_drift() -> list[Any]:
    """Hook for the engine's reconciliation: positions whose exchange view differs from
    ours. Shown on the dashboard as soon as `execution.selectors.reconciliation_drift`
    exists (the lead's engine provides it); empty until then."""
    try:
        from execution import selectors as execution_selectors  # type: ignore[attr-defined]
    except ImportError:
        return []
    fn = getattr(execution_selectors, "reconciliation_drift", None)
    return list(fn()) if fn else []


def attention_items(*, rows: list[StrategyRow], health: dict[str, Any], now: datetime | None = None) -> list[dict]:
    """What needs a human now, most severe first. Each item: level, title, detail, url
    (a changelist filter or None)."""
    now = now or timezone.now()
    items: list[dict] = []
    for name in ("database", "broker", "worker"):
        check = health.get("checks", {}).get(name)
        if check and not check.get("ok"):
            detail = check.get("error") or f"last heartbeat {check.get('heartbeat_age_s')} s ago"
            what = {
                "database": "Signals cannot be recorded.",
                "broker": "Signals are recorded but not handed to the worker; the sweeper re-queues them when it is back.",
                "worker": "Signals are recorded but nothing executes them.",
            }[name]
            items.append({"level": "error", "title": f"{name.capitalize()} is down", "detail": f"{what} ({detail})"})
    unknown = list(
        Order.objects.filter(status=Order.Status.UNKNOWN)
        .select_related("strategy")
        .only("id", "client_order_id", "symbol", "strategy__strategy_id", "submitted_at")[: ATTENTION_LIST_LIMIT + 1]
    )
    if unknown:
        more = "+" if len(unknown) > ATTENTION_LIST_LIMIT else ""
        items.append(
            {
                "level": "error",
                "title": f"{min(len(unknown), ATTENTION_LIST_LIMIT)}{more} order(s) in an unknown state",
                "detail": "The exchange's answer was lost; the engine is looking them up by client order id. "
                + ", ".join(f"{o.client_order_id} ({o.strategy.strategy_id} {o.symbol})" for o in unknown[:5]),
                "url": "execution/order/?status__exact=unknown",
            }
        )
    stuck = Signal.objects.filter(
        status__in=Signal.PENDING_STATUSES, received_at__lt=now - STUCK_AFTER, received_at__gte=now - timedelta(days=7)
    )[:101].count()
    if stuck:
        items.append(
            {
                "level": "error",
                "title": f"{stuck if stuck <= 100 else '100+'} signal(s) waiting more than 60 s",
                "detail": "Accepted or executing for over a minute: check the worker and the broker.",
                "url": "signals/signal/?stuck=yes",
            }
        )
    from execution.selectors import protection_refused

    refused = protection_refused(since=now - timedelta(days=1))
    if refused:
        items.append(
            {
                "level": "error",
                "title": f"{len(refused)} protective order(s) refused in the last 24 h",
                "detail": "A stop-loss / take-profit / trailing stop could not be placed; the position was "
                "flattened or left unprotected per the strategy's setting. "
                + "; ".join(f"{o.strategy.strategy_id} {o.symbol} {o.get_protection_display()}: {o.reason[:120]}"
                            for o in refused[:3]),
                "url": "execution/order/?status__exact=rejected&protection__exact=" + refused[0].protection,
            }
        )  # fmt: skip
    for drift in reconciliation_drift():
        items.append({"level": "error", "title": "Position drift", "detail": str(drift)})
    for row in rows:
        if row.silent:
            age = "never" if row.last_signal_age_s is None else f"{_human_age(row.last_signal_age_s)} ago"
            items.append(
                {
                    "level": "warning",
                    "title": f"{row.strategy.strategy_id} is silent",
                    "detail": f"Last alert {age}; expected one every {row.strategy.expected_interval_minutes} min. "
                    "Check the TradingView alert is still active.",
                    "url": f"strategies/strategy/{row.strategy.pk}/change/",
                }
            )
    return items


def _human_age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def human_age(seconds: float | None) -> str:
    return "never" if seconds is None else _human_age(seconds)


def latency_series(*, since: datetime, bucket: str = "hour") -> list[tuple[datetime, float | None, float | None]]:
    """Hourly p50 and p95 of alert-to-order-sent (ms) since `since`."""
    if _is_postgres():
        sql = f"""
            SELECT date_trunc('{bucket}', received_at) AS b,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - received_at)) * 1000),
              percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (sent_at - received_at)) * 1000)
            FROM signals_signal
            WHERE received_at >= %s AND sent_at IS NOT NULL
            GROUP BY b ORDER BY b
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [since])
            return [(b, p50, p95) for b, p50, p95 in cursor.fetchall()]
    buckets: dict[datetime, list[float]] = {}
    for received, sent in Signal.objects.filter(received_at__gte=since, sent_at__isnull=False).values_list(
        "received_at", "sent_at"
    ):
        key = received.replace(minute=0, second=0, microsecond=0)
        buckets.setdefault(key, []).append((sent - received).total_seconds() * 1000)
    return [(b, percentile(v, 0.5), percentile(v, 0.95)) for b, v in sorted(buckets.items())]


def slippage_series(*, since: datetime) -> list[tuple[datetime, float | None, float | None]]:
    """Hourly mean and worst slippage (bps, positive = worse than the signal price)."""
    if _is_postgres():
        sql = """
            SELECT date_trunc('hour', created_at) AS b, AVG(slippage_bps), MAX(slippage_bps)
            FROM execution_order
            WHERE created_at >= %s AND slippage_bps IS NOT NULL
            GROUP BY b ORDER BY b
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, [since])
            return [(b, float(a), float(m)) for b, a, m in cursor.fetchall()]
    buckets: dict[datetime, list[float]] = {}
    for created, slip in Order.objects.filter(created_at__gte=since, slippage_bps__isnull=False).values_list(
        "created_at", "slippage_bps"
    ):
        buckets.setdefault(created.replace(minute=0, second=0, microsecond=0), []).append(float(slip))
    return [(b, sum(v) / len(v), max(v)) for b, v in sorted(buckets.items())]
