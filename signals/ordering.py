"""The order signals run in: one rule, as SQL, for the engine's claim and the outbox's sweep.

Within a strategy, a signal waits for every pending signal of the same market that ARRIVED
before it (by `received_at`, the moment the webhook saw the request, then by id) — BTCUSDT
and BTCUSDT.P are one market; a close_all waits for every market and every market waits for
a pending close_all; a strategy pinned to one symbol (symbol override) is one market.
Different strategies never wait for each other, and an alert fanned out to several accounts
orders per (account, strategy, market): a subscription's run waits only for that
subscription's earlier runs, never for another account's.

Except where waiting buys nothing: a plain entry (buy or sell) does not wait for an earlier
entry of the same side once every order of that one is acknowledged by the venue (`passable`):
its plan is the same whether that entry has filled or not. A close, a reversal, close_all, an
alert carrying TradingView's market position, and a strategy with a maximum position or
sizing from equity do depend on the resulting position, and wait for the fill.

Arrival, not commit: when the database stalls, requests waiting in the web workers commit in
whatever order it comes back. A signal whose commit lagged its arrival by more than
INTAKE_LAG_SECONDS is therefore held until INTAKE_HOLD_SECONDS after its arrival: by then
every request that arrived before it has been recorded or refused (the webhook answers
within its deadline), so arrival order is judged on complete information.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings

from .models import Signal

_MARKET = (
    "(CASE WHEN upper({s}.ticker) LIKE '%%.P' THEN substr(upper({s}.ticker), 1, length({s}.ticker) - 2)"
    " ELSE upper({s}.ticker) END)"
)


def market_key(ticker: str) -> str:
    """Tickers that reach the same market order against each other: BTCUSDT and BTCUSDT.P."""
    ticker = ticker.upper()
    return ticker[:-2] if ticker.endswith(".P") else ticker


def earlier_pending_sql(sig: str, strat: str) -> str:
    """`FROM … WHERE …` of the pending signals the signal aliased `sig` (its strategy aliased
    `strat`) must wait for, aliased `e`. Parameters: the two pending statuses."""
    market = _MARKET.format(s=sig)
    return (
        f"FROM {Signal._meta.db_table} e WHERE e.strategy_id = {sig}.strategy_id AND e.id <> {sig}.id"
        f" AND (e.subscription_id = {sig}.subscription_id"
        f" OR (e.subscription_id IS NULL AND {sig}.subscription_id IS NULL))"
        " AND e.status IN (%s, %s)"
        f" AND (e.received_at < {sig}.received_at OR (e.received_at = {sig}.received_at AND e.id < {sig}.id))"
        f" AND ({sig}.action = 'close_all' OR {strat}.symbol_override <> '' OR e.action = 'close_all'"
        f" OR e.ticker IN ({market}, {market} || '.P'))"
        f" AND NOT ({passable_sql(sig, strat)})"
    )


def passable_sql(sig: str, strat: str) -> str:
    """The signal aliased `sig` need not wait for the earlier pending signal `e`: both are
    entries of the same side without TradingView's market position, on a strategy with
    neither a maximum position nor sizing from equity, on a derivatives account; and `e` is
    being executed with every order of it an acknowledged entry (nothing still on its way
    out, nothing closing). Then the position `sig` is planned on has `sig`'s side or is
    flat whether `e` has filled or not (had it been opposite, `e` would have closed it), so
    the plan is the same: one entry leg of its own size."""
    order = apps.get_model("execution", "Order")
    account = apps.get_model("execution", "ExchangeAccount")
    equity = apps.get_model("strategies", "Strategy").SizingMode.PERCENT_EQUITY
    waiting = ", ".join(f"'{s}'" for s in (order.Status.PENDING, order.Status.SUBMITTING, order.Status.UNKNOWN))
    return (
        f"{sig}.action IN ('buy', 'sell') AND e.action = {sig}.action"
        f" AND {sig}.market_position = '' AND e.market_position = ''"
        f" AND {strat}.max_position IS NULL AND {strat}.sizing_mode <> '{equity}'"
        f" AND e.status = '{Signal.Status.PROCESSING}'"
        f" AND EXISTS (SELECT 1 FROM {account._meta.db_table} pa WHERE pa.id = {strat}.account_id"
        f"  AND pa.market_type <> '{account.MarketType.SPOT}')"
        f" AND EXISTS (SELECT 1 FROM {order._meta.db_table} po WHERE po.signal_id = e.id)"
        f" AND NOT EXISTS (SELECT 1 FROM {order._meta.db_table} po WHERE po.signal_id = e.id"
        f"  AND (po.purpose <> '{order.Purpose.OPEN}' OR po.status IN ({waiting})))"
    )


def pending_params() -> list[Any]:
    return list(Signal.PENDING_STATUSES)


def not_held_sql(sig: str, vendor: str) -> str:
    """The signal aliased `sig` is not held for a lagging commit (parameters: hold_params)."""
    if vendor == "postgresql":
        return f"({sig}.committed_at - {sig}.received_at <= %s OR {sig}.received_at <= %s)"
    return f"(julianday({sig}.committed_at) - julianday({sig}.received_at) <= %s OR {sig}.received_at <= %s)"


def hold_params(*, now: datetime, vendor: str) -> list[Any]:
    lag = timedelta(seconds=settings.INTAKE_LAG_SECONDS)
    return [
        lag if vendor == "postgresql" else lag.total_seconds() / 86400,
        now - timedelta(seconds=settings.INTAKE_HOLD_SECONDS),
    ]


def held_until(signal: Signal) -> float | None:
    """When a signal held for a lagging commit may run (a time.time()), or None."""
    if signal.committed_at is None or signal.received_at is None:
        return None
    if (signal.committed_at - signal.received_at).total_seconds() <= settings.INTAKE_LAG_SECONDS:
        return None
    return signal.received_at.timestamp() + settings.INTAKE_HOLD_SECONDS
