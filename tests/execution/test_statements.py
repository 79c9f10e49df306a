"""The execution engine's hand-written SQL must build exactly what the ORM builds, and its
conditional updates must refuse exactly what the engine relies on them to refuse."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Exists
from django.utils import timezone

from execution.engine import statements
from execution.models import Order, Position
from signals.models import Signal
from strategies.models import TradingControl
from tests.factories import ExchangeAccountFactory, OrderFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def orm_signal(pk: int) -> Signal:
    return (
        Signal.objects.select_related("strategy", "strategy__account")
        .annotate(global_halted=Exists(TradingControl.objects.filter(pk=1, halted=True)))
        .get(pk=pk)
    )


def loaded_fields(instance) -> dict:
    deferred = instance.get_deferred_fields()
    return {
        f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if f.attname not in deferred
    }


def test_signal_with_strategy_and_account_matches_the_orm(django_assert_num_queries):
    account = ExchangeAccountFactory(label="hot", max_orders_per_second=Decimal("7.5"), halted=True)
    strategy = StrategyFactory(
        account=account,
        allowed_actions=["buy", "close_all"],
        leverage=Decimal("3"),
        symbol_override="ETH/USDT:USDT",
        description="not needed to trade",
    )
    signal = SignalFactory(
        strategy=strategy,
        fired_at=timezone.now() - timedelta(seconds=2),
        bar_time=timezone.now() - timedelta(minutes=1),
        payload={"comment": "kept for people"},
        raw_body='{"a": 1}',
    )
    TradingControl.objects.update_or_create(pk=1, defaults={"halted": True})

    with django_assert_num_queries(1):
        loaded = statements.signal_load(signal.pk)
        fast = loaded.signal
        # strategy and account are attached: reading them costs no query
        assert fast.strategy.account.label == "hot"

    slow = orm_signal(signal.pk)
    assert loaded.global_halted is True and slow.global_halted is True
    assert set(fast.get_deferred_fields()) == statements.SIGNAL_SKIPPED
    expected = {k: v for k, v in loaded_fields(slow).items() if k not in statements.SIGNAL_SKIPPED}
    assert loaded_fields(fast) == expected
    assert {k: v for k, v in loaded_fields(fast.strategy).items()} == {
        k: v for k, v in loaded_fields(slow.strategy).items() if k not in statements.STRATEGY_SKIPPED
    }
    assert fast.strategy.allowed_actions == ["buy", "close_all"]
    assert loaded_fields(fast.strategy.account) == loaded_fields(slow.strategy.account)
    assert fast.strategy.account.max_orders_per_second == Decimal("7.5")
    # deferred fields still load on demand, as with .defer()
    assert fast.payload == {"comment": "kept for people"}


def test_signal_without_account_or_strategy_and_missing_signal():
    strategy = StrategyFactory(account=None)
    signal = SignalFactory(strategy=strategy)
    loaded = statements.signal_load(signal.pk)
    assert loaded.signal.strategy.pk == strategy.pk and loaded.signal.strategy.account is None
    assert loaded.global_halted is False

    orphan = SignalFactory(strategy=None, strategy_key="gone")
    fast = statements.signal_load(orphan.pk).signal
    assert fast.strategy_id is None and fast.strategy is None

    assert statements.signal_load(orphan.pk + 1000) is None


def claim(pk: int) -> bool:
    """The engine's claim: one statement on PostgreSQL, two on SQLite, one rule."""
    now = timezone.now()
    loaded = statements.signal_claim(signal_id=pk, now=now, lease_until=now + timedelta(seconds=60), owner="test")
    return bool(loaded and loaded.claimed)


def test_claim_waits_for_an_earlier_pending_signal_of_the_same_market_only():
    strategy = StrategyFactory()
    first = SignalFactory(strategy=strategy, ticker="BTCUSDT.P")
    same_market = SignalFactory(strategy=strategy, ticker="BTCUSDT")
    other_market = SignalFactory(strategy=strategy, ticker="ETHUSDT.P")
    other_strategy = SignalFactory(ticker="BTCUSDT.P")

    assert not claim(same_market.pk)  # the earlier BTC signal is still pending
    assert claim(other_market.pk)
    assert claim(other_strategy.pk)
    assert claim(first.pk)
    Signal.objects.filter(pk=first.pk).update(status=Signal.Status.EXECUTED)
    assert claim(same_market.pk)
    row = Signal.objects.get(pk=same_market.pk)
    assert (row.status, row.attempts, row.started_at is not None) == (Signal.Status.PROCESSING, 1, True)


def test_close_all_waits_for_everything_and_everything_waits_for_it():
    strategy = StrategyFactory()
    earlier = SignalFactory(strategy=strategy, ticker="XRPUSDT.P")
    close_all = SignalFactory(strategy=strategy, action="close_all", ticker="BTCUSDT.P")
    later = SignalFactory(strategy=strategy, ticker="SOLUSDT.P")
    assert not claim(close_all.pk)  # waits for the XRP signal before it
    assert not claim(later.pk)  # waits for the pending close_all
    Signal.objects.filter(pk=earlier.pk).update(status=Signal.Status.EXECUTED)
    assert claim(close_all.pk)
    assert not claim(later.pk)  # the close_all is still running
    Signal.objects.filter(pk=close_all.pk).update(status=Signal.Status.EXECUTED)
    assert claim(later.pk)


def test_a_strategy_pinned_to_one_symbol_runs_every_signal_in_order():
    strategy = StrategyFactory(symbol_override="BTC/USDT:USDT")
    first = SignalFactory(strategy=strategy, ticker="BTCUSDT.P")
    other_ticker = SignalFactory(strategy=strategy, ticker="ETHUSDT.P")  # same market after the override
    assert not claim(other_ticker.pk)
    assert claim(first.pk)


def test_a_live_lease_refuses_and_an_expired_one_is_taken_over():
    signal = SignalFactory()
    assert claim(signal.pk)
    assert not claim(signal.pk)  # a duplicated task: processing with a live lease
    Signal.objects.filter(pk=signal.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert claim(signal.pk)
    assert Signal.objects.get(pk=signal.pk).attempts == 2
    Signal.objects.filter(pk=signal.pk).update(status=Signal.Status.EXECUTED)
    assert not claim(signal.pk)


def test_claim_loads_the_signal_as_the_claim_left_it_with_strategy_and_account(django_assert_num_queries):
    signal = SignalFactory(ticker="ETHUSDT.P")
    now = timezone.now()
    with django_assert_num_queries(1 if connection.vendor == "postgresql" else 2):
        loaded = statements.signal_claim(
            signal_id=signal.pk, now=now, lease_until=now + timedelta(seconds=60), owner="host|1|2|3"
        )
        assert loaded.signal.strategy.account.pk == signal.strategy.account_id
    assert loaded.claimed
    row = Signal.objects.get(pk=signal.pk)
    assert (row.status, row.attempts, row.lease_until) == (Signal.Status.PROCESSING, 1, now + timedelta(seconds=60))
    assert row.lease_owner == "host|1|2|3"
    ours = loaded.signal
    assert (ours.status, ours.attempts, ours.lease_until, ours.lease_owner) == (
        row.status,
        row.attempts,
        row.lease_until,
        row.lease_owner,
    )
    assert statements.signal_claim(signal_id=signal.pk + 1000, now=now, lease_until=now, owner="x") is None
    again = statements.signal_claim(signal_id=signal.pk, now=now, lease_until=now, owner="x")
    assert not again.claimed and again.signal.attempts == 1  # a duplicated task: the lease is live


def test_order_claim_only_while_the_run_owns_the_signal():
    signal = SignalFactory(status=Signal.Status.PROCESSING, attempts=2)
    order = OrderFactory(signal=signal)
    now = timezone.now()
    # token 1: what a worker whose lease ran out still believes; the owner's token is 2
    assert not statements.order_claim_for_send(order_id=order.pk, signal_id=signal.pk, token=1, now=now)
    assert statements.order_claim_for_send(order_id=order.pk, signal_id=signal.pk, token=2, now=now)
    assert not statements.order_claim_for_send(order_id=order.pk, signal_id=signal.pk, token=2, now=now)  # sent
    order.refresh_from_db()
    assert (order.status, order.submit_count, order.submitted_at) == (Order.Status.SUBMITTING, 1, now)


def test_strategy_positions_are_the_non_zero_ones_of_this_strategy_and_account():
    strategy = StrategyFactory()
    other = StrategyFactory(account=strategy.account)
    Position.objects.create(account=strategy.account, strategy=strategy, symbol="BTC/USDT:USDT", qty=Decimal("0.5"))
    Position.objects.create(account=strategy.account, strategy=strategy, symbol="ETH/USDT:USDT", qty=Decimal("0"))
    Position.objects.create(account=strategy.account, strategy=strategy, symbol="SOL/USDT:USDT", qty=Decimal("-2"))
    Position.objects.create(account=strategy.account, strategy=other, symbol="XRP/USDT:USDT", qty=Decimal("9"))
    assert statements.strategy_positions(account_id=strategy.account_id, strategy_id=strategy.pk) == {
        "BTC/USDT:USDT": Decimal("0.5"),
        "SOL/USDT:USDT": Decimal("-2"),
    }


def planned_leg(signal: Signal, n: int, **extra) -> Order:
    """What the planner builds: leg 1 closes (reduce-only limit), leg 2 opens."""
    fields = dict(
        signal=signal,
        strategy=signal.strategy,
        account=signal.strategy.account,
        leg=n,
        purpose=Order.Purpose.CLOSE if n == 1 else Order.Purpose.OPEN,
        client_order_id=f"tvt-ins-{signal.pk}-{n}",
        symbol="BTC/USDT:USDT",
        side="sell",
        order_type="limit",
        reduce_only=n == 1,
        requested_qty=Decimal("0.015"),
        limit_price=Decimal("64999.5"),
        signal_price=Decimal("65000"),
    )
    return Order(**{**fields, **extra})


def test_orders_insert_writes_what_the_orm_would_and_keeps_the_unique_legs():
    from django.db import IntegrityError, transaction

    signal = SignalFactory()

    def leg(n: int, **extra) -> Order:
        return planned_leg(signal, n, **extra)

    made = statements.orders_insert([leg(1), leg(2)])
    assert [o.leg for o in made] == [1, 2] and all(o.pk and not o._state.adding for o in made)
    row = Order.objects.get(pk=made[0].pk)
    assert (row.signal_id, row.leg, row.status, row.reduce_only, row.replies) == (signal.pk, 1, "pending", True, [])
    assert (row.requested_qty, row.limit_price, row.filled_qty, row.fee) == (
        Decimal("0.015"),
        Decimal("64999.5"),
        0,
        0,
    )
    assert row.created_at is not None and row.updated_at is not None
    assert Order.objects.get(pk=made[1].pk).purpose == Order.Purpose.OPEN
    with pytest.raises(IntegrityError), transaction.atomic():
        statements.orders_insert([leg(2)])  # the same leg of the same signal twice: refused


ROW_FIELDS = [f.attname for f in Order._meta.concrete_fields if f.attname not in ("id", "signal_id", "client_order_id")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the conditional insert is PostgreSQL's")
def test_first_send_writes_the_legs_with_the_first_claimed_only_while_the_run_owns_the_signal():
    """A first run writes its legs and claims the first to send in one statement, refused
    (nothing written) once the run no longer owns the signal. Apart from the first leg's
    claim, the rows are what the plain insert writes, typed NULLs and all."""
    signal = SignalFactory(status=Signal.Status.PROCESSING, attempts=2)
    owner, taken_over = 2, 1  # fencing tokens: the owner's, and a worker's whose lease ran out
    now = timezone.now()

    def legs() -> list[Order]:
        # leg 2 a market order: no limit price, a NULL numeric among typed values
        return [planned_leg(signal, 1), planned_leg(signal, 2, order_type="market", limit_price=None)]

    refused = legs()
    assert not statements.orders_insert_sending_first(orders=refused, signal_id=signal.pk, token=taken_over, now=now)
    assert not Order.objects.filter(signal=signal).exists()
    assert [(o.pk, o.status, o.submit_count) for o in refused] == [(None, "pending", 0), (None, "pending", 0)]
    Signal.objects.filter(pk=signal.pk).update(status=Signal.Status.EXECUTED)
    assert not statements.orders_insert_sending_first(orders=legs(), signal_id=signal.pk, token=owner, now=now)  # done
    Signal.objects.filter(pk=signal.pk).update(status=Signal.Status.PROCESSING)

    made = legs()
    assert statements.orders_insert_sending_first(orders=made, signal_id=signal.pk, token=owner, now=now)
    first, second = (Order.objects.get(pk=o.pk) for o in made)
    assert (first.leg, first.status, first.submit_count, first.submitted_at) == (1, "submitting", 1, now)
    assert (second.leg, second.status, second.submit_count, second.submitted_at) == (2, "pending", 0, None)
    assert second.limit_price is None and second.requested_qty == Decimal("0.015")

    other = SignalFactory(strategy=signal.strategy)
    plain = statements.orders_insert(
        [planned_leg(other, 1), planned_leg(other, 2, order_type="market", limit_price=None)]
    )
    plain_rows = [Order.objects.get(pk=o.pk) for o in plain]
    plain_rows[0].status, plain_rows[0].submit_count, plain_rows[0].submitted_at = "submitting", 1, now
    skip = {"created_at", "updated_at"}
    for ours, theirs in zip((first, second), plain_rows, strict=True):
        assert {f: getattr(ours, f) for f in ROW_FIELDS if f not in skip} == {
            f: getattr(theirs, f) for f in ROW_FIELDS if f not in skip
        }


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the conditional insert is PostgreSQL's")
def test_conditional_insert_refuses_an_over_long_value_instead_of_cutting_it():
    from django.db import DataError, transaction

    signal = SignalFactory(status=Signal.Status.PROCESSING, attempts=1)
    with pytest.raises(DataError), transaction.atomic():
        statements.orders_insert_sending_first(
            orders=[planned_leg(signal, 1, client_order_id="x" * 200)], signal_id=signal.pk, token=1, now=timezone.now()
        )
    assert not Order.objects.filter(signal=signal).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement claim is PostgreSQL's")
def test_one_statement_claim_brings_the_strategys_positions_exactly():
    signal = SignalFactory()
    strategy = signal.strategy
    other = StrategyFactory(account=strategy.account)
    Position.objects.create(
        account=strategy.account, strategy=strategy, symbol="BTC/USDT:USDT", qty=Decimal("0.123456789012")
    )
    Position.objects.create(account=strategy.account, strategy=strategy, symbol="ETH/USDT:USDT", qty=Decimal("0"))
    Position.objects.create(account=strategy.account, strategy=other, symbol="SOL/USDT:USDT", qty=Decimal("5"))
    now = timezone.now()
    loaded = statements.signal_claim(signal_id=signal.pk, now=now, lease_until=now, owner="x")
    assert loaded.claimed
    assert loaded.positions == {"BTC/USDT:USDT": Decimal("0.123456789012")}
    assert loaded.positions == statements.strategy_positions(account_id=strategy.account_id, strategy_id=strategy.pk)
    flat = SignalFactory()
    assert statements.signal_claim(signal_id=flat.pk, now=now, lease_until=now, owner="x").positions == {}


def test_inserts_fall_back_to_the_orm_where_the_database_cannot_return_ids(monkeypatch):
    """SQLite before 3.35 (e.g. a self-built Python on an old distribution) has no RETURNING."""
    from django.db import connection as conn

    from tvtrader.fastsql import insert_returning_pk

    monkeypatch.setattr(type(conn.features), "can_return_rows_from_bulk_insert", False)
    signal = SignalFactory()
    made = insert_returning_pk(
        [OrderFactory.build(signal=signal, leg=n, client_order_id=f"tvt-old-{n}") for n in (1, 2)]
    )
    assert [o.pk for o in made] == list(
        Order.objects.filter(signal=signal).order_by("leg").values_list("pk", flat=True)
    )


def test_positions_booked_before_fees_were_counted_get_them_from_their_fills():
    """The migration that added `fees_paid` fills it in from each position's fills, as new
    fills count: quote currency as is, base coin at the fill's price, others not at all;
    test signals on a live account never booked positions, so their fills do not count."""
    import importlib

    from django.apps import apps

    from execution.models import Fill

    backfill = importlib.import_module("execution.migrations.0005_position_fees_paid").backfill_fees
    account = ExchangeAccountFactory(mode="testnet")
    strategy = StrategyFactory(account=account)
    rows = [
        Position.objects.create(account=account, strategy=None, symbol="BTC/USDT", qty=Decimal("0.02")),
        Position.objects.create(account=account, strategy=strategy, symbol="BTC/USDT", qty=Decimal("0.02")),
    ]

    def fill(n: int, fee: str, currency: str, *, is_test: bool = False) -> None:
        order = OrderFactory(
            signal=SignalFactory(strategy=strategy, is_test=is_test),
            client_order_id=f"tvfee{n}",
            symbol="BTC/USDT",
        )
        Fill.objects.create(
            order=order,
            trade_id=f"t{n}",
            qty=Decimal("0.01"),
            price=Decimal("65000"),
            fee=Decimal(fee),
            fee_currency=currency,
            filled_at=timezone.now(),
        )

    fill(1, "0.39", "USDT")
    fill(2, "0.00001", "BTC")  # 0.65 USDT at the fill's price
    fill(3, "0.002", "BNB")  # not counted
    fill(4, "5", "USDT", is_test=True)  # a test signal: paper, never booked on this account
    backfill(apps, None)
    for row in rows:
        row.refresh_from_db()
        assert row.fees_paid == Decimal("1.04")
