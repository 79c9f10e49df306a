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
    assert close_order.side == "sell" and close_order.reduce_only
    position = Position.objects.get(strategy=strategy, symbol="BTC/USDT:USDT")
    assert position.qty == 0
    assert position.realized_pnl > 0
