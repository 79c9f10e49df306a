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


__all__: list[Any] = ["cached_market", "reconciliation_drift", "reconciliation_drift_store"]
