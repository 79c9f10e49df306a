"""Reads about execution shared by the admin, the API and commands (no exchange calls)."""

from __future__ import annotations

import json
from typing import Any

from .exchanges.base import MarketInfo
from .exchanges.errors import Misconfigured

RECONCILE_DRIFT_KEY = "reconcile:drift"


def cached_market(account, symbol: str) -> MarketInfo | None:
    """The market's rules from the snapshot a worker saved when it loaded the account's
    markets; None when no worker has loaded them yet. Raises Misconfigured when the
    snapshot exists and has no such market."""
    from tvtrader.redisconn import key, redis_client

    from .exchanges.ccxt_gateway import MARKETS_SNAPSHOT_KEY, market_info

    try:
        raw = redis_client().get(key(MARKETS_SNAPSHOT_KEY.format(account.pk)))
    except Exception:
        return None
    if not raw:
        return None
    markets = json.loads(raw)
    if symbol not in markets:
        raise Misconfigured(f"{symbol} is not a market on {account.get_exchange_display()} ({account.market_type})")
    return market_info(symbol, markets[symbol])


def reconciliation_drift() -> list[str]:
    """Unresolved differences found by the last periodic reconciliation, for the dashboard."""
    from tvtrader.redisconn import key, redis_client

    try:
        raw = redis_client().get(key(RECONCILE_DRIFT_KEY))
    except Exception:
        return []
    return json.loads(raw) if raw else []


def reconciliation_drift_store(lines: list[str]) -> None:
    from tvtrader.redisconn import key, redis_client

    try:
        redis_client().set(key(RECONCILE_DRIFT_KEY), json.dumps(lines[:50]), ex=3600)
    except Exception:
        pass


def position_protection(position) -> list[dict[str, Any]]:
    """The protective orders guarding a strategy's position now (live at the exchange, or
    on their way there): kind, level in words, trigger, trail, quantity, status."""
    from .models import Order

    if position.strategy_id is None or not position.qty:
        return []
    side = "sell" if position.qty > 0 else "buy"
    rows = (
        Order.objects.filter(
            account_id=position.account_id, strategy_id=position.strategy_id, symbol=position.symbol, side=side
        )
        .exclude(protection="")
        .filter(
            status__in=[Order.Status.PENDING, Order.Status.SUBMITTING, Order.Status.OPEN, Order.Status.UNKNOWN],
            cancel_requested_at=None,
        )
        .order_by("protection", "-generation")
    )
    return [
        {
            "kind": o.protection,
            "level": o.level,
            "trigger_price": o.trigger_price,
            "trail_percent": o.trail_percent,
            "trail_distance": o.trail_distance,
            "qty": o.requested_qty,
            "status": o.status,
            "client_order_id": o.client_order_id,
        }
        for o in rows
    ]


def protection_refused(*, since) -> list:
    """Protective orders the exchange refused (or never took) since `since`: each left a
    position unprotected until flattened or fixed (the dashboard lists them)."""
    from .models import Order

    return list(
        Order.objects.filter(status=Order.Status.REJECTED, closed_at__gte=since)
        .exclude(protection="")
        .select_related("strategy")
        .order_by("-id")[:20]
    )


__all__: list[Any] = [
    "cached_market",
    "position_protection",
    "protection_refused",
    "reconciliation_drift",
    "reconciliation_drift_store",
]
