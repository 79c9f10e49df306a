"""Reads about execution shared by the admin, the API and commands (no exchange calls)."""

from __future__ import annotations

import json
from typing import Any

from .exchanges.base import MarketInfo
from .exchanges.errors import Misconfigured

RECONCILE_DRIFT_KEY = "reconcile:drift-by-account"


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


def reconciliation_drift() -> list[dict[str, Any]]:
    """Unresolved differences found by the last reconciliation of each account (the periodic
    task or `manage.py reconcile`), for the dashboard: [{account, lines, at}], an account's
    entry replaced by its next reconciliation and kept until then (no expiry: drift that
    nobody re-checked is still drift)."""
    from tvtrader.redisconn import key, redis_client

    try:
        raw = redis_client().hgetall(key(RECONCILE_DRIFT_KEY))
    except Exception:
        return []
    found = []
    for account, value in sorted(raw.items()):
        entry = json.loads(value)
        if entry.get("lines"):
            found.append({"account": account.decode() if isinstance(account, bytes) else account, **entry})
    return found


def reconciliation_drift_store(*, account: str, lines: list[str], at: str) -> None:
    """Record one account's unresolved differences (empty: in sync, its entry is removed)."""
    from tvtrader.redisconn import key, redis_client

    try:
        if lines:
            redis_client().hset(key(RECONCILE_DRIFT_KEY), account, json.dumps({"lines": lines[:50], "at": at}))
        else:
            redis_client().hdel(key(RECONCILE_DRIFT_KEY), account)
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
