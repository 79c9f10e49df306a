"""The whole chain on the paper exchange: webhook → database → broker → real worker → order."""

from decimal import Decimal

import pytest

from execution.models import Fill, Order, Position
from signals.models import Signal
from tests.conftest import wait_for
from tests.factories import StrategyFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _finished(signal_id):
    signal = Signal.objects.get(pk=signal_id)
    return signal if signal.is_terminal else None


def test_buy_then_close_long_on_paper_through_a_real_worker(worker_factory, post_alert):
    strategy = StrategyFactory(strategy_id="demo")
    worker_factory()
    buy = post_alert(action="buy", volume=0.01, price=65000, bar_time="2026-11-24T02:00:00Z")
    assert buy.status_code == 202, buy.content
    signal = wait_for(lambda: _finished(buy.json()["signal_id"]), message="buy executed")
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.FILLED
    assert order.filled_qty == Decimal("0.01")
    assert order.slippage_bps == Decimal("2.00")  # the paper account's default slippage
    assert Fill.objects.filter(order=order).count() == 1
    assert Position.objects.get(strategy=strategy, symbol="BTC/USDT:USDT").qty == Decimal("0.01")
    assert signal.sent_at and signal.acked_at and signal.filled_at

    close = post_alert(action="close_long", price=66000, bar_time="2026-11-24T02:15:00Z")
    signal = wait_for(lambda: _finished(close.json()["signal_id"]), message="close executed")
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    close_order = Order.objects.get(signal=signal)
    order.refresh_from_db()
    assert close_order.side == "sell" and close_order.reduce_only
    position = Position.objects.get(strategy=strategy, symbol="BTC/USDT:USDT")
    assert position.qty == 0
    assert position.realized_pnl > 0
    # Both fills paid the paper fee in USDT: the net result is after both.
    fees = order.fee + close_order.fee
    assert fees > 0 and close_order.fee_currency == "USDT"
    assert position.fees_paid == fees
    assert position.net_realized_pnl == position.realized_pnl - fees
    account_row = Position.objects.get(account=strategy.account, strategy=None, symbol="BTC/USDT:USDT")
    assert account_row.fees_paid == fees


@pytest.mark.django_db
def test_a_flatten_field_in_an_alert_cannot_get_past_the_kill_switch(post_alert):
    from execution.services import signal_execute
    from strategies.services import strategy_halt

    strategy = StrategyFactory(strategy_id="demo")
    response = post_alert(action="buy", flatten=True)
    assert response.status_code == 202
    strategy_halt(strategy=strategy, actor="test")
    signal_execute(signal_id=response.json()["signal_id"])
    signal = Signal.objects.get(pk=response.json()["signal_id"])
    assert signal.status == Signal.Status.BLOCKED
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_an_operators_flatten_closes_through_the_kill_switch():
    from execution.services import signal_execute, strategy_flatten
    from strategies.services import strategy_halt
    from tests.factories import SignalFactory

    strategy = StrategyFactory(strategy_id="demo")
    opened = SignalFactory(strategy=strategy, action="buy", volume=Decimal("0.01"))
    signal_execute(signal_id=opened.pk)
    strategy_halt(strategy=strategy, actor="test")
    flatten = strategy_flatten(strategy=strategy, actor="test")
    signal_execute(signal_id=flatten.pk)
    flatten.refresh_from_db()
    assert flatten.status == Signal.Status.EXECUTED, flatten.reason
    assert Position.objects.get(strategy=strategy, symbol="BTC/USDT:USDT").qty == 0
