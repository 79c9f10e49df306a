"""The statements between a queued signal and its order reaching the exchange, as SQL.

Through the ORM each of these cost 1.5–2 ms of Python (compiling the query, building model
instances) against 0.1–0.2 ms in PostgreSQL; in the worker, where pool threads share one
interpreter lock, that became 3–4 ms each and most of an alert's latency
(docs/performance.md). Here the SQL is built once per process from the models' metadata, so a
new field is picked up without editing this file, and PostgreSQL prepares each statement
after a few uses. Values go through the same database converters the ORM applies, so the
instances are exactly what a queryset would have built (tests/execution/test_statements.py
compares them with the ORM's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.utils import timezone

from execution.models import ExchangeAccount, Fill, Order, Position
from signals import ordering
from signals.models import Signal
from strategies.models import Strategy, TradingControl
from tvtrader.fastsql import insert_returning_pk

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


@dataclass
class Loaded:
    """A signal as the engine reads it: with its strategy and the strategy's account
    attached, the global kill switch (read in the same statement: switches are never
    cached), whether this statement's claim took, and, from the claim's snapshot on
    PostgreSQL, the strategy's non-zero positions on its account."""

    signal: Signal
    global_halted: bool
    claimed: bool = False
    positions: dict[str, Decimal] | None = None
    #: When the claim did not take: the pending signal it waits for, if that is why.
    blocked_by: int | None = None


@cache
def _load_sql(vendor: str):
    signal_cols = _columns(Signal, "s", SIGNAL_SKIPPED)
    strategy_cols = _columns(Strategy, "st", STRATEGY_SKIPPED)
    account_cols = _columns(ExchangeAccount, "a")
    select = (
        f"SELECT {signal_cols[0]}, {strategy_cols[0]}, {account_cols[0]},"
        f" EXISTS (SELECT 1 FROM {TradingControl._meta.db_table} g WHERE g.id = 1 AND g.halted = %s)"
    )
    joins = (
        f" FROM {Signal._meta.db_table} s"
        f" LEFT JOIN {Strategy._meta.db_table} st ON st.id = s.strategy_id"
        f" LEFT JOIN {ExchangeAccount._meta.db_table} a ON a.id = st.account_id"
    )
    return select, joins, signal_cols, strategy_cols, account_cols


def _from_row(row) -> Loaded:
    _, _, signal_cols, strategy_cols, account_cols = _load_sql(connection.vendor)
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
    return Loaded(signal=signal, global_halted=bool(row[-1]))


def signal_load(signal_id: int) -> Loaded | None:
    """The signal with its strategy and account, and the global switch. One round trip."""
    select, joins, *_ = _load_sql(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(f"{select}{joins} WHERE s.id = %s", [True, signal_id])
        row = cursor.fetchone()
    return None if row is None else _from_row(row)


# --- the claim -----------------------------------------------------------------------------
# The order signals run in is signals.ordering's rule (arrival order per market, held while a
# lagging commit may still have earlier arrivals behind it); the sweeper uses the same rule.


@cache
def _claim_update_sql(vendor: str) -> str:
    table, strategies = Signal._meta.db_table, Strategy._meta.db_table
    return (
        f"UPDATE {table} AS c SET status = %s, started_at = COALESCE(c.started_at, %s),"
        " attempts = c.attempts + 1, lease_until = %s, lease_owner = %s"
        f" FROM {strategies} AS cs WHERE c.id = %s AND cs.id = c.strategy_id"
        " AND (c.status = %s OR (c.status = %s AND c.lease_until < %s))"
        f" AND {ordering.not_held_sql('c', vendor)}"
        f" AND NOT EXISTS (SELECT 1 {ordering.earlier_pending_sql('c', 'cs')})"
    )


def _claim_params(*, signal_id: int, now: datetime, lease_until: datetime, owner: str, vendor: str) -> list[Any]:
    return [
        Signal.Status.PROCESSING,
        now,
        lease_until,
        owner,
        signal_id,
        Signal.Status.ACCEPTED,
        Signal.Status.PROCESSING,
        now,
        *ordering.hold_params(now=now, vendor=vendor),
        *ordering.pending_params(),
    ]


@cache
def _blocker_sql(vendor: str) -> str:
    return f"SELECT e.id {ordering.earlier_pending_sql('s', 'st')} ORDER BY e.received_at DESC, e.id DESC LIMIT 1"


@cache
def _load_and_claim_sql() -> str:
    """PostgreSQL: claim and load in one statement (a data-modifying WITH). The SELECT reads
    the snapshot from before the UPDATE: it returns the signal as it was, whether the claim
    took, the signal it waits for (when it did not), and the strategy's positions from the
    same snapshot as the claim's check — if an earlier signal of the market reads finished
    there, its fills (committed before it finished) are in these figures too. Quantities as
    text: exact decimals."""
    select, joins, *_ = _load_sql(connection.vendor)
    return (
        f"WITH claimed AS ({_claim_update_sql('postgresql')} RETURNING c.id)"
        f" {select}, EXISTS (SELECT 1 FROM claimed),"
        f" ({_blocker_sql('postgresql')}),"
        f" (SELECT json_agg(json_build_array(p.symbol, p.qty::text)) FROM {Position._meta.db_table} p"
        "  WHERE p.account_id = st.account_id AND p.strategy_id = s.strategy_id AND p.qty <> 0)"
        f"{joins} WHERE s.id = %s"
    )


def signal_claim(*, signal_id: int, now: datetime, lease_until: datetime, owner: str) -> Loaded | None:
    """Claim the signal by the rule above and load it. `Loaded.claimed` says whether the claim
    took; on success `Loaded.signal` is the signal as the claim left it (processing,
    `attempts` = this run's fencing token); when not, `Loaded.blocked_by` is the signal it
    waits for, if any. None when there is no such signal."""
    vendor = connection.vendor
    claim = _claim_params(signal_id=signal_id, now=now, lease_until=lease_until, owner=owner, vendor=vendor)
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_load_and_claim_sql(), [*claim, True, *Signal.PENDING_STATUSES, signal_id])
            row = cursor.fetchone()
        if row is None:
            return None
        loaded = _from_row(row[:-3])
        loaded.claimed = bool(row[-3])
        loaded.blocked_by = row[-2]
        positions = row[-1]
        if isinstance(positions, str):
            positions = json.loads(positions)
        loaded.positions = {symbol: Decimal(qty) for symbol, qty in positions or []}
        if loaded.claimed:  # the row as the claim left it
            signal = loaded.signal
            signal.status, signal.attempts, signal.lease_until = (
                Signal.Status.PROCESSING,
                signal.attempts + 1,
                lease_until,
            )
            signal.started_at = signal.started_at or now
            signal.lease_owner = owner
            loaded.blocked_by = None
        return loaded
    with connection.cursor() as cursor:
        cursor.execute(_claim_update_sql(vendor), claim)
        claimed = cursor.rowcount == 1
    loaded = signal_load(signal_id)
    if loaded is not None:
        loaded.claimed = claimed
        if not claimed and loaded.signal.strategy_id is not None:
            select, joins, *_ = _load_sql(vendor)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT ({_blocker_sql(vendor)}){joins} WHERE s.id = %s", [*Signal.PENDING_STATUSES, signal_id]
                )
                row = cursor.fetchone()
            loaded.blocked_by = row[0] if row else None
    return loaded


@cache
def _finish_sql(vendor: str, with_reason: bool, with_fills: bool) -> tuple[str, Any]:
    cols = _columns(Signal, "s", SIGNAL_SKIPPED)
    quote = connection.ops.quote_name
    returning = ", ".join(quote(Signal._meta.get_field(name).column) for name in cols[1])
    sets = "status = %s, finished_at = %s, lease_until = NULL"
    if with_reason:
        sets += ", reason = %s"
    if with_fills:
        sets += ", first_fill_at = COALESCE(first_fill_at, %s), filled_at = %s"
    return (
        f"UPDATE {Signal._meta.db_table} SET {sets} WHERE id = %s AND status = %s AND attempts = %s"
        f" RETURNING {returning}",
        cols,
    )


def signal_finish(signal: Signal, *, token: int, status: str, now: datetime, reason: str, fill_times) -> bool:
    """Set the final status (and `reason` when given, and the fill times (first, last) when
    given) only while the run holding `token` owns the signal, and refresh `signal` from
    the row as written, in one statement. False (nothing written) when not owned."""
    sql, cols = _finish_sql(connection.vendor, bool(reason), fill_times is not None)
    params: list[Any] = [status, now]
    if reason:
        params.append(reason)
    if fill_times is not None:
        params += list(fill_times)
    params += [signal.pk, Signal.Status.PROCESSING, token]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    written = _build(Signal, cols[1], cols[2], row)
    for attname in cols[1]:
        setattr(signal, attname, getattr(written, attname))
    return True


# --- orders ---------------------------------------------------------------------------------


@cache
def _order_claim_sql(vendor: str) -> str:
    return (
        f"UPDATE {Order._meta.db_table} SET status = %s, submit_count = submit_count + 1, submitted_at = %s"
        " WHERE id = %s AND status = %s"
        f" AND EXISTS (SELECT 1 FROM {Signal._meta.db_table} s WHERE s.id = %s AND s.status = %s AND s.attempts = %s)"
    )


def order_claim_for_send(*, order_id: int, signal_id: int, token: int, now: datetime, sends: int = 0) -> bool:
    """PENDING → SUBMITTING, only while the run holding fencing token `token` still owns the
    signal."""
    with connection.cursor() as cursor:
        cursor.execute(
            _order_claim_sql(connection.vendor),
            [Order.Status.SUBMITTING, now, order_id, Order.Status.PENDING, signal_id, Signal.Status.PROCESSING, token],
        )
        return cursor.rowcount == 1


@cache
def _order_resend_sql(vendor: str) -> str:
    return (
        f"UPDATE {Order._meta.db_table} SET status = %s, submit_count = submit_count + 1, submitted_at = %s,"
        " reason = %s, not_found_since = NULL WHERE id = %s AND status IN (%s, %s) AND submit_count = %s"
        f" AND EXISTS (SELECT 1 FROM {Signal._meta.db_table} s WHERE s.id = %s AND s.status = %s AND s.attempts = %s)"
    )


def order_claim_for_resend(*, order_id: int, signal_id: int, token: int, now: datetime, sends: int) -> bool:
    """UNKNOWN/SUBMITTING → SUBMITTING again, one send more, only if nobody sent it since this
    run read `sends` and the run holding `token` still owns the signal."""
    with connection.cursor() as cursor:
        cursor.execute(
            _order_resend_sql(connection.vendor),
            [
                Order.Status.SUBMITTING,
                now,
                "not received by the exchange; resent with the same client order id",
                order_id,
                Order.Status.UNKNOWN,
                Order.Status.SUBMITTING,
                sends,
                signal_id,
                Signal.Status.PROCESSING,
                token,
            ],
        )
        return cursor.rowcount == 1


def orders_insert(orders: list[Order]) -> list[Order]:
    """INSERT the planned legs in one statement (atomic on its own) and set their ids; the
    unique constraints (client id per account, leg per signal) apply."""
    return insert_returning_pk(orders)


def orders_insert_sending_first(*, orders: list[Order], signal_id: int, token: int, now: datetime) -> bool:
    """INSERT the planned legs with the first one already claimed to send (SUBMITTING, sent
    once, at `now`), in one statement that writes them only while the run holding `token`
    still owns the signal: a first send needs one round trip instead of two. PostgreSQL
    only. Returns False, writing nothing, when the signal is not owned any more."""
    first = orders[0]
    first.status, first.submit_count, first.submitted_at = Order.Status.SUBMITTING, 1, now
    condition = (
        f"EXISTS (SELECT 1 FROM {Signal._meta.db_table} s WHERE s.id = %s AND s.status = %s AND s.attempts = %s)"
    )
    inserted = insert_returning_pk(orders, only_if=(condition, [signal_id, Signal.Status.PROCESSING, token]))
    if not inserted:
        first.status, first.submit_count, first.submitted_at = Order.Status.PENDING, 0, None
    return bool(inserted)


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


# --- the ledger -------------------------------------------------------------------------------
# What the venue says about an order, recorded (ledger.order_apply_state): through the ORM
# each fill cost ~14 statements (savepoints, get_or_create, two position rows each read,
# maybe created, saved) and ~10 ms of the worker's Python under load; here it is the order
# read and locked, the fill inserted unless already there, the order and signal updated in
# one statement (PostgreSQL), and the two position rows locked in one statement and written
# in one batch.


@cache
def _order_lock_sql(vendor: str) -> tuple[str, Any]:
    cols = _columns(Order, "o")
    lock = " FOR UPDATE" if vendor == "postgresql" else ""  # SQLite: the write transaction is the lock
    return f"SELECT {cols[0]} FROM {Order._meta.db_table} o WHERE o.id = %s{lock}", cols


def order_lock(order_id: int) -> Order:
    """The order, its row locked until the end of the transaction (call inside one).
    Raises Order.DoesNotExist as `.get()` would."""
    sql, cols = _order_lock_sql(connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [order_id])
        row = cursor.fetchone()
    if row is None:
        raise Order.DoesNotExist(f"order {order_id}")
    return _build(Order, cols[1], cols[2], row)


@cache
def _insert_ignoring_duplicate_sql(model, vendor: str) -> tuple[str, list]:
    quote = connection.ops.quote_name
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))}) ON CONFLICT DO NOTHING"
    )
    return sql, fields


def fill_insert(fill: Fill) -> bool:
    """INSERT the fill unless one with its trade id is already recorded for its order (the
    unique constraint decides: a venue repeating itself, or two looks at the same fill).
    Returns whether it was new."""
    sql, fields = _insert_ignoring_duplicate_sql(Fill, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, [f.get_db_prep_save(f.pre_save(fill, True), connection) for f in fields])
        return cursor.rowcount == 1


@cache
def _order_and_signal_update_sql(vendor: str, order_columns: tuple[str, ...], first_fill: bool) -> tuple[str, str]:
    """(order UPDATE, signal UPDATE); on PostgreSQL the first is "" and the second does both."""
    quote = connection.ops.quote_name
    signal_sql = f"UPDATE {Signal._meta.db_table} SET acked_at = COALESCE(acked_at, %s)"
    if first_fill:
        signal_sql += ", first_fill_at = COALESCE(first_fill_at, %s)"
    signal_sql += " WHERE id = %s"
    if not order_columns:
        return "", signal_sql
    order_sql = (
        f"UPDATE {Order._meta.db_table} SET {', '.join(f'{quote(c)} = %s' for c in order_columns)} WHERE id = %s"
    )
    if vendor == "postgresql":
        return "", f"WITH o AS ({order_sql} RETURNING id) {signal_sql}"
    return order_sql, signal_sql


def order_and_signal_update(*, order: Order, updates: dict[str, Any], now: datetime, first_fill: bool) -> None:
    """Write `updates` (field name → value) to the order, and the acknowledgement (and, with
    `first_fill`, the first fill) time to its signal unless already set. One statement on
    PostgreSQL."""
    fields = [Order._meta.get_field(name) for name in updates]
    order_sql, signal_sql = _order_and_signal_update_sql(connection.vendor, tuple(f.column for f in fields), first_fill)
    order_params = [*(f.get_db_prep_save(updates[f.name], connection) for f in fields), order.pk]
    signal_params = [now, now, order.signal_id] if first_fill else [now, order.signal_id]
    with connection.cursor() as cursor:
        if order_sql:
            cursor.execute(order_sql, order_params)
        cursor.execute(signal_sql, (order_params if fields and not order_sql else []) + signal_params)


_POSITION_NUMBERS = ("qty", "avg_price", "realized_pnl", "fees_paid")


@cache
def _positions_lock_sql(vendor: str) -> tuple[str, Any]:
    cols = _columns(Position, "p")
    lock = " FOR UPDATE" if vendor == "postgresql" else ""
    return (
        f"SELECT {cols[0]} FROM {Position._meta.db_table} p WHERE p.account_id = %s AND p.symbol = %s"
        f" AND (p.strategy_id IS NULL OR p.strategy_id = %s) ORDER BY p.id{lock}",
        cols,
    )


def positions_lock(*, account_id: int, strategy_id: int | None, symbol: str) -> dict[int | None, Position]:
    """The account's position row of `symbol` and the strategy's share of it, created when
    missing, both locked until the end of the transaction; by strategy id (None: the
    account's)."""
    sql, cols = _positions_lock_sql(connection.vendor)
    owners = [None, strategy_id] if strategy_id is not None else [None]
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(sql, [account_id, symbol, strategy_id])
            rows = [_build(Position, cols[1], cols[2], row) for row in cursor.fetchall()]
        found = {row.strategy_id: row for row in rows}
        missing = [owner for owner in owners if owner not in found]
        if not missing:
            return found
        if attempt == 0:
            # Created here, or concurrently by another fill (the unique constraints keep one).
            sql_insert, fields = _insert_ignoring_duplicate_sql(Position, connection.vendor)
            with connection.cursor() as cursor:
                for owner in missing:
                    row = Position(account_id=account_id, strategy_id=owner, symbol=symbol)
                    cursor.execute(sql_insert, [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields])
    raise Position.DoesNotExist(f"position rows of account {account_id} {symbol} could not be created")


@cache
def _position_update_sql(vendor: str) -> tuple[str, list]:
    quote = connection.ops.quote_name
    fields = [Position._meta.get_field(name) for name in (*_POSITION_NUMBERS, "updated_at")]
    sets = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    return f"UPDATE {Position._meta.db_table} SET {sets} WHERE id = %s", fields


def positions_save(rows: list[Position]) -> None:
    """Write the rows' quantities, prices, P&L and fees (and `updated_at`) in one batch."""
    sql, fields = _position_update_sql(connection.vendor)
    params = [[f.get_db_prep_save(f.pre_save(row, False), connection) for f in fields] + [row.pk] for row in rows]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def warm(rounds: int = 6) -> None:
    """Run every statement above on this thread's connection with ids that match nothing,
    `rounds` times. The first use of a statement on a PostgreSQL connection loads the
    server's catalog caches for its tables (~2.4 ms instead of ~1.1 ms), and psycopg
    prepares it only after `DB_PREPARE_THRESHOLD` uses (then ~0.2 ms). A pool thread can go
    dozens of alerts between two uses of its connection, so the worker warms them at start."""
    now = timezone.now()
    for _ in range(rounds):
        signal_load(0)
        signal_claim(signal_id=0, now=now, lease_until=now, owner="warm")
        strategy_positions(account_id=0, strategy_id=0)
        order_claim_for_send(order_id=0, signal_id=0, token=-1, now=now)
        if connection.vendor == "postgresql":  # writes nothing: signal 0 does not exist
            orders_insert_sending_first(orders=[_warm_order()], signal_id=0, token=-1, now=now)


def _warm_order() -> Order:
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
