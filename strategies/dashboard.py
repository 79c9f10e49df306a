"""Reads behind the admin dashboard: per-strategy state and activity, latency percentiles,
and slippage (the "needs attention" list is strategies/attention.py). A fixed, small number of queries whatever the
history size (every query is bounded by a time window or an index)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from execution.models import Fill, Order, Position
from signals.models import Signal

from .halts import trading_state
from .models import Strategy, TradingControl

WINDOW = timedelta(hours=24)


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
    #: Who engaged the switch that stops it and why (an operator, or a breaker), or "".
    halt_note: str = ""


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
    from execution import pnl

    for pos in pnl.with_marks(
        Position.objects.filter(strategy__isnull=False)
        .exclude(qty=0)
        .select_related("account")
        .order_by("account__label", "symbol")
    ):
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
            halt_note=halt_note(strategy),
        )
        for pos in positions.get(strategy.pk, []):
            mark, _ = pnl.position_mark(pos)
            row.positions.append({"position": pos, "mark": mark, "unrealised": pnl.unrealized_pnl(pos)})
        rows.append(row)
    return rows, global_halted


def halt_note(strategy: Strategy) -> str:
    """The engaged switch of the strategy, else of its account: by whom (an operator, or
    "breaker:<name>") and why."""
    account = strategy.account if strategy.account_id else None
    for what, owner in (("strategy", strategy), (f"account {account.label if account else ''}", account)):
        if owner is not None and owner.halted:
            reason = f": {owner.halt_reason}" if owner.halt_reason else ""
            return f"{what} kill switch by {owner.halted_by or '?'}{reason}"
    return ""


def human_age(seconds: float | None) -> str:
    from .attention import human_age as _age

    return _age(seconds)


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


def latency_chart(series: list[tuple[datetime, float | None, float | None]], *, start: datetime, end: datetime):
    """The alert → order sent chart: p50 and p95 per hour, in ms, or in s once a value
    passes 10 s (an axis reading 100,000 ms says less than one reading 100 s)."""
    from . import charts

    worst = max((v for _, a, b in series for v in (a, b) if v is not None), default=0)
    scale, unit = (1000.0, "s") if worst > 10_000 else (1.0, "ms")
    return charts.line_chart(
        title=f"Alert to order sent ({unit})",
        unit=unit,
        start=start,
        end=end,
        series=[
            ("p50", "#417690", [(b, None if v is None else v / scale) for b, v, _ in series]),
            ("p95", "#c4462a", [(b, None if v is None else v / scale) for b, _, v in series]),
        ],
    )


PALETTE = ("#417690", "#c4462a", "#2e7d32", "#6a5acd", "#e0a800", "#00838f", "#8d6e63", "#d81b60")


def pnl_charts() -> tuple[Any, Any, Any]:
    """Running net realised P&L (after fees) per strategy and per account over all history
    (the curves start at the first fill), and the equity of paper accounts (starting balance
    plus that P&L; a live account's balance history is the exchange's, not kept here)."""
    from execution import pnl
    from execution.models import ExchangeAccount

    from . import charts

    def chart(curves, names, title, *, unit="quote", include_zero=True):
        if curves is None:
            return charts.line_chart(
                title=title,
                unit=unit,
                series=[],
                empty_text=f"Not drawn: more than {pnl.REPLAY_LIMIT:,} fills (totals: Positions).",
            )
        series = [
            (names.get(owner, f"#{owner}"), PALETTE[i % len(PALETTE)], points)
            for i, (owner, points) in enumerate(sorted(curves.items(), key=lambda kv: names.get(kv[0], "")))
        ]
        return charts.line_chart(
            title=title,
            unit=unit,
            series=series,
            step_lines=True,
            include_zero=include_zero,
            empty_text="No fill yet.",
        )

    curves = pnl.pnl_curves_cached()
    by_strategy, by_account = curves["strategy"], curves["account"]
    strategy_names = dict(Strategy.objects.filter(pk__in=by_strategy or []).values_list("pk", "strategy_id"))
    accounts = {a.pk: a for a in ExchangeAccount.objects.filter(pk__in=by_account or [])}
    account_names = {pk: a.label for pk, a in accounts.items()}
    equity = None
    if by_account is not None:
        equity = {
            pk: [(t, float(accounts[pk].paper_starting_balance) + v) for t, v in points]
            for pk, points in by_account.items()
            if pk in accounts and accounts[pk].is_paper
        }
    return (
        chart(by_strategy, strategy_names, "Net realised P&L per strategy"),
        chart(by_account, account_names, "Net realised P&L per account"),
        chart(equity, account_names, "Paper account equity", include_zero=False),
    )
