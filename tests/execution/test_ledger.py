"""The ledger records what the venue says about an order: each new fill once, the order's
status, fees and slippage, the signal's latency chain, and the account's and the strategy's
positions — whatever order and however often the venue repeats itself."""

from decimal import Decimal

import pytest

from execution.engine.ledger import order_apply_state
from execution.exchanges import OrderState
from execution.models import Fill, Order, Position
from tests.factories import OrderFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def state(order: Order, status: str, filled: str, average: str | None = None, fee: str = "0") -> OrderState:
    return OrderState(
        client_order_id=order.client_order_id,
        exchange_order_id="ex-1",
        status=status,
        filled=Decimal(filled),
        average=Decimal(average) if average else None,
        fee=Decimal(fee),
        fee_currency="USDT",
    )


def positions(order: Order) -> dict:
    return {
        p.strategy_id: (p.qty, p.avg_price, p.realized_pnl, p.fees_paid)
        for p in Position.objects.filter(account=order.account, symbol=order.symbol)
    }


def test_fills_are_recorded_once_each_however_often_the_venue_repeats_them():
    order = OrderFactory(requested_qty=Decimal("1"), signal_price=Decimal("100"), status=Order.Status.OPEN)
    assert order_apply_state(order=order, state=state(order, "open", "0"), reply=True) == Order.Status.OPEN
    half = state(order, "partially_filled", "0.4", "100", fee="0.04")
    assert order_apply_state(order=order, state=half) == Order.Status.PARTIALLY_FILLED
    assert order_apply_state(order=order, state=half) == Order.Status.PARTIALLY_FILLED  # the stream, then a poll
    assert order_apply_state(order=order, state=state(order, "filled", "1", "101.2", fee="0.1")) == "filled"
    assert order_apply_state(order=order, state=state(order, "filled", "1", "101.2", fee="0.1")) == "filled"

    fills = list(Fill.objects.filter(order=order).order_by("id").values_list("qty", "price", "fee"))
    # The second fill's price is what makes the venue's average: (1 × 101.2 − 0.4 × 100) / 0.6.
    assert fills == [
        (Decimal("0.4"), Decimal("100"), Decimal("0.04")),
        (Decimal("0.6"), Decimal("102"), Decimal("0.06")),
    ]
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and order.closed_at is not None
    assert (order.filled_qty, order.avg_price, order.fee) == (Decimal("1"), Decimal("101.2"), Decimal("0.1"))
    assert order.exchange_order_id == "ex-1" and order.slippage_bps == Decimal("120.00")
    assert order.acked_at is not None and order.first_fill_at <= order.last_fill_at
    signal = order.signal
    signal.refresh_from_db()
    assert signal.acked_at is not None and signal.first_fill_at == order.first_fill_at
    # The account's position and the strategy's share of it, fees in the quote currency.
    book = (Decimal("1"), Decimal("101.2"), Decimal("0"), Decimal("0.1"))
    assert positions(order) == {None: book, order.strategy_id: book}


def test_a_closing_fill_realizes_profit_on_both_position_rows_and_a_later_state_never_reopens_a_final_order():
    strategy = StrategyFactory()
    opening = OrderFactory(signal__strategy=strategy, requested_qty=Decimal("2"), signal_price=Decimal("100"))
    order_apply_state(order=opening, state=state(opening, "filled", "2", "100"))
    closing = OrderFactory(
        signal__strategy=strategy, side=Order.Side.SELL, requested_qty=Decimal("2"), signal_price=Decimal("110")
    )
    assert order_apply_state(order=closing, state=state(closing, "filled", "2", "110")) == Order.Status.FILLED
    flat = (Decimal("0"), None, Decimal("20"), Decimal("0"))
    assert positions(closing) == {None: flat, strategy.pk: flat}
    # A stale "open" arriving after the fill (a slow reply) changes nothing.
    assert order_apply_state(order=closing, state=state(closing, "open", "0"), reply=True) == Order.Status.FILLED
    assert positions(closing) == {None: flat, strategy.pk: flat}
    assert Fill.objects.filter(order=closing).count() == 1
