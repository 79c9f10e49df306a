"""The statements between a queued signal and its order reaching the exchange, as SQL.

Through the ORM each of these cost 1.5–2 ms of Python (compiling the query, building model
instances) against 0.1–0.2 ms in PostgreSQL; in the worker, where pool threads share one
interpreter lock, that became 3–4 ms each and most of an alert's latency
(docs/performance.md). Here the SQL is built once per process from the models' metadata, so a
new field is picked up without editing this file, and PostgreSQL prepares each statement
after a few uses. Values go through the same database converters the ORM applies, so the
instances are exactly what a queryset would have built. Tests in
`tests/execution/test_hotpath.py` compare them with the ORM's.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.utils import timezone

from signals.models import Signal
from strategies.models import Strategy, TradingControl
from tvtrader.fastsql import insert_returning_pk
from tvtrader.processes import lease_owner

from .models import ExchangeAccount, Order, Position

# Columns execution never reads on its way to the exchange: for people, not for orders.
SIGNAL_SKIPPED = frozenset({"payload", "raw_body", "errors"})
STRATEGY_SKIPPED = frozenset({"description"})


def _columns(model, alias: str, skipped: frozenset[str] = frozenset()):
    """(SQL select list, attnames, converters) for `model`'s concrete fields, in field
    order (what `Model.from_db` expects)."""
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if f.name not in skipped]
    converters = []
    for field in fields:
        column = field.get_col(alias)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        converters.append((column, found) if found else None)
    select = ", ".join(f"{alias}.{quote(f.column)}" for f in fields)
    return select, [f.attname for f in fields], converters


def _build(model, attnames, converters, values):
    values = list(values)
    for i, conv in enumerate(converters):
        if conv is not None:
            column, functions = conv
            for function in functions:
                values[i] = function(values[i], column, connection)
    return model.from_db(connection.alias, attnames, values)


@cache
def _signal_sql(vendor: str):
    signal_cols = _columns(Signal, "s", SIGNAL_SKIPPED)
    strategy_cols = _columns(Strategy, "st", STRATEGY_SKIPPED)
    account_cols = _columns(ExchangeAccount, "a")
    sql = (
        f"SELECT {signal_cols[0]}, {strategy_cols[0]}, {account_cols[0]},"
        f" EXISTS (SELECT 1 FROM {TradingControl._meta.db_table} g WHERE g.id = 1 AND g.halted = %s)"
        f" FROM {Signal._meta.db_table} s"
        f" LEFT JOIN {Strategy._meta.db_table} st ON st.id = s.strategy_id"
        f" LEFT JOIN {ExchangeAccount._meta.db_table} a ON a.id = st.account_id"
        " WHERE s.id = %s"
    )
    return sql, signal_cols, strategy_cols, account_cols


def signal_for_execution(signal_id: int) -> Signal | None:
    """The signal with its strategy and the strategy's account attached, and
    `global_halted` (the global kill switch, read in the same statement: switches are
    never cached). One round trip."""
    sql = _signal_sql(connection.vendor)[0]
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, signal_id])
        row = cursor.fetchone()
    return None if row is None else _signal_from_row(row)


def _signal_from_row(row) -> Signal:
    _, signal_cols, strategy_cols, account_cols = _signal_sql(connection.vendor)
    n_signal, n_strategy = len(signal_cols[1]), len(strategy_cols[1])
    signal = _build(Signal, signal_cols[1], signal_cols[2], row[:n_signal])
    strategy = None
    if row[n_signal] is not None:  # the strategy's id
        strategy = _build(Strategy, strategy_cols[1], strategy_cols[2], row[n_signal : n_signal + n_strategy])
        account_values = row[n_signal + n_strategy : -1]
        account = (
            _build(ExchangeAccount, account_cols[1], account_cols[2], account_values)
            if account_values[0] is not None
            else None
        )
        Strategy._meta.get_field("account").set_cached_value(strategy, account)
    Signal._meta.get_field("strategy").set_cached_value(signal, strategy)
    signal.global_halted = bool(row[-1])
    return signal


@cache
def _load_and_claim_sql() -> str:
    """PostgreSQL only (SQLite has no data-modifying WITH): the claim of `signal_claim_update`
    and the load of `signal_for_execution` in one round trip. The SELECT reads the snapshot
    from before the UPDATE, so it returns the signal as it was, plus whether the claim took."""
    load_sql = _signal_sql(connection.vendor)[0]
    table, strategies = Signal._meta.db_table, Strategy._meta.db_table
    market = "CASE WHEN upper(c.ticker) LIKE '%%.P' THEN substr(upper(c.ticker), 1, length(c.ticker) - 2) ELSE upper(c.ticker) END"
    marker = f" FROM {table} s LEFT JOIN "
    select, rest = load_sql.split(marker, 1)
    rest = marker[len(" FROM ") :] + rest
    return (
        f"WITH claimed AS (UPDATE {table} AS c SET status = %s, started_at = COALESCE(c.started_at, %s),"
        " attempts = c.attempts + 1, lease_until = %s, lease_owner = %s"
        f" FROM {strategies} AS cs"
        " WHERE c.id = %s AND cs.id = c.strategy_id"
        " AND (c.status = %s OR (c.status = %s AND c.lease_until < %s))"
        f" AND NOT EXISTS (SELECT 1 FROM {table} e WHERE e.strategy_id = c.strategy_id AND e.id < c.id"
        " AND e.status IN (%s, %s)"
        " AND (c.action = 'close_all' OR cs.symbol_override <> '' OR e.action = 'close_all'"
        f" OR e.ticker IN ({market}, {market} || '.P')))"
        " RETURNING c.id)"
        # The strategy's positions, from the same snapshot as the claim's check: if an earlier
        # signal of the market reads finished there, its fills (committed before it finished)
        # are in these figures too. Quantities as text: exact decimals.
        f" {select}, EXISTS (SELECT 1 FROM claimed),"
        f" (SELECT json_agg(json_build_array(p.symbol, p.qty::text)) FROM {Position._meta.db_table} p"
        "  WHERE p.account_id = st.account_id AND p.strategy_id = s.strategy_id AND p.qty <> 0)"
        f" FROM {rest}"
    )


def signal_load_and_claim(*, signal_id: int, now: datetime, lease_until: datetime) -> tuple[Signal | None, bool]:
    """Claim the signal (same rules as `signal_claim_update`: accepted or lease expired, and
    no earlier pending signal of its strategy — of its market, unless it is a close_all or
    the strategy is pinned to one symbol) and load it like `signal_for_execution`, in one
    statement. Returns the signal as it was before the claim, and whether the claim took; the
    signal carries its strategy's non-zero positions on the account (`_positions`), read in
    the same snapshot, for planning."""
    sql = _load_and_claim_sql()
    params = [
        Signal.Status.PROCESSING,
        now,
        lease_until,
        lease_owner(),
        signal_id,
        Signal.Status.ACCEPTED,
        Signal.Status.PROCESSING,
        now,
        *Signal.PENDING_STATUSES,
        True,
        signal_id,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None, False
    signal = _signal_from_row(row[:-2])
    positions = row[-1]
    if isinstance(positions, str):
        positions = json.loads(positions)
    signal._positions = {symbol: Decimal(qty) for symbol, qty in positions or []}
    return signal, bool(row[-2])


@cache
def _claim_sql(vendor: str, by_market: bool) -> str:
    table = Signal._meta.db_table
    market = " AND (e.ticker IN (%s, %s) OR e.action = %s)" if by_market else ""
    return (
        f"UPDATE {table} SET status = %s, started_at = COALESCE(started_at, %s), attempts = attempts + 1,"
        " lease_until = %s, lease_owner = %s"
        " WHERE id = %s AND attempts = %s"
        " AND (status = %s OR (status = %s AND lease_until < %s))"
        f" AND NOT EXISTS (SELECT 1 FROM {table} e WHERE e.strategy_id = %s AND e.id < %s"
        f" AND e.status IN (%s, %s){market})"
    )


def signal_claim_update(
    *, signal: Signal, now: datetime, lease_until: datetime, market_tickers: tuple[str, str] | None
) -> bool:
    """Conditional claim: accepted (or processing with an expired lease), not claimed by
    anyone since `signal.attempts` was read, and no earlier signal of the same strategy —
    for `market_tickers`, of the same market or a close_all — still pending."""
    params: list[Any] = [
        Signal.Status.PROCESSING,
        now,
        lease_until,
        lease_owner(),
        signal.pk,
        signal.attempts,
        Signal.Status.ACCEPTED,
        Signal.Status.PROCESSING,
        now,
        signal.strategy_id,
        signal.pk,
        *Signal.PENDING_STATUSES,
    ]
    if market_tickers is not None:
        params += [*market_tickers, "close_all"]
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(connection.vendor, market_tickers is not None), params)
        return cursor.rowcount == 1


@cache
def _positions_sql(vendor: str) -> str:
    return f"SELECT symbol, qty FROM {Position._meta.db_table} WHERE account_id = %s AND strategy_id = %s AND qty <> 0"


def strategy_positions(*, account_id: int, strategy_id: int) -> dict[str, Decimal]:
    """This strategy's non-zero positions on the account, by symbol."""
    column = Position._meta.get_field("qty").get_col("p")
    converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
    with connection.cursor() as cursor:
        cursor.execute(_positions_sql(connection.vendor), [account_id, strategy_id])
        rows = cursor.fetchall()
    out = {}
    for symbol, qty in rows:
        for function in converters:
            qty = function(qty, column, connection)
        out[symbol] = qty
    return out


@cache
def _order_claim_sql(vendor: str) -> str:
    return (
        f"UPDATE {Order._meta.db_table} SET status = %s, submit_count = submit_count + 1, submitted_at = %s"
        " WHERE id = %s AND status = %s"
        f" AND EXISTS (SELECT 1 FROM {Signal._meta.db_table} s WHERE s.id = %s AND s.status = %s AND s.attempts = %s)"
    )


def order_claim_for_send(*, order_id: int, signal: Signal, now: datetime) -> bool:
    """PENDING → SUBMITTING, only while `signal` is still owned by this run (its fencing
    token, `attempts`, unchanged)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _order_claim_sql(connection.vendor),
            [
                Order.Status.SUBMITTING,
                now,
                order_id,
                Order.Status.PENDING,
                signal.pk,
                Signal.Status.PROCESSING,
                signal.attempts,
            ],
        )
        return cursor.rowcount == 1


def orders_insert(orders: list[Order]) -> list[Order]:
    """INSERT the planned legs in one statement (atomic on its own) and set their ids; the
    unique constraints (client id per account, leg per signal) apply."""
    return insert_returning_pk(orders)


def orders_insert_sending_first(*, orders: list[Order], signal: Signal, now: datetime) -> bool:
    """INSERT the planned legs with the first one already claimed to send (SUBMITTING, sent
    once, at `now`), in one statement that writes them only while `signal` is still owned
    by this run. The signal's first send then needs one round trip instead of two (insert
    the legs, then claim the first). PostgreSQL only. Returns False, writing nothing, when
    the signal is not owned any more."""
    first = orders[0]
    first.status, first.submit_count, first.submitted_at = Order.Status.SUBMITTING, 1, now
    condition = (
        f"EXISTS (SELECT 1 FROM {Signal._meta.db_table} s WHERE s.id = %s AND s.status = %s AND s.attempts = %s)"
    )
    inserted = insert_returning_pk(orders, only_if=(condition, [signal.pk, Signal.Status.PROCESSING, signal.attempts]))
    if not inserted:
        first.status, first.submit_count, first.submitted_at = Order.Status.PENDING, 0, None
    return bool(inserted)


def warm(rounds: int = 6) -> None:
    """Run every statement above on this thread's connection with ids that match nothing,
    `rounds` times. The first use of a statement on a PostgreSQL connection loads the
    server's catalog caches for its tables (~2.4 ms instead of ~1.1 ms), and psycopg
    prepares it only after `DB_PREPARE_THRESHOLD` uses (then ~0.2 ms). A pool thread can go
    dozens of alerts between two uses of its connection, so the worker warms them at start."""
    now = timezone.now()
    probe = Signal(pk=0, strategy_id=0, attempts=-1)
    for _ in range(rounds):
        signal_for_execution(0)
        if connection.vendor == "postgresql":
            signal_load_and_claim(signal_id=0, now=now, lease_until=now)
        signal_claim_update(signal=probe, now=now, lease_until=now, market_tickers=("-", "-.P"))
        signal_claim_update(signal=probe, now=now, lease_until=now, market_tickers=None)
        strategy_positions(account_id=0, strategy_id=0)
        order_claim_for_send(order_id=0, signal=probe, now=now)
        if connection.vendor == "postgresql":  # writes nothing: the probe signal is not owned
            orders_insert_sending_first(orders=[_warm_order(now)], signal=probe, now=now)


def _warm_order(now: datetime) -> Order:
    return Order(
        signal_id=0,
        strategy_id=0,
        account_id=0,
        leg=1,
        purpose=Order.Purpose.OPEN,
        client_order_id="warm",
        symbol="-",
        side="buy",
        order_type="market",
        requested_qty=1,
        signal_price=1,
    )
