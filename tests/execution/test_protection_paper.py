"""Protective orders on the paper exchange: placed after the entry fills, triggered by the
prices the paper exchange sees, booked as the fill that closed the position."""

from decimal import Decimal

import pytest

from execution.engine.protect import protection_sweep
from execution.models import Fill, Order, PaperOrder, Position
from execution.services import signal_execute
from signals.models import Signal
from tests.factories import SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db

SYMBOL = "BTC/USDT:USDT"


def _protective(signal, kind=None):
    rows = Order.objects.filter(signal=signal).exclude(protection="").order_by("leg")
    return rows.filter(protection=kind) if kind else rows


def _run(strategy, **fields) -> Signal:
    signal = SignalFactory(strategy=strategy, **fields)
    signal_execute(signal_id=signal.pk)
    signal.refresh_from_db()
    return signal


def test_a_buy_with_strategy_defaults_gets_a_stop_and_a_take_profit_for_its_filled_size():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), take_profit_percent=Decimal("4"))
    signal = _run(strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    entry = Order.objects.get(signal=signal, protection="")
    stop, take = _protective(signal, "stop_loss").get(), _protective(signal, "take_profit").get()
    for order in (stop, take):
        assert order.status == Order.Status.OPEN, order.reason
        assert order.side == "sell" and order.reduce_only and order.protects == entry
        assert order.requested_qty == entry.filled_qty == Decimal("0.01")
    assert stop.client_order_id == f"{entry.client_order_id}s1"
    assert take.client_order_id == f"{entry.client_order_id}t1"
    assert stop.trigger_price < entry.avg_price < take.trigger_price
    assert stop.trigger_price == (entry.avg_price * Decimal("0.98")).quantize(Decimal("0.01"), rounding="ROUND_CEILING")
    assert PaperOrder.objects.get(client_order_id=stop.client_order_id).status == "open"


def test_the_price_crossing_the_stop_closes_the_position_and_our_books_say_closed_by_stop_loss():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), take_profit_percent=Decimal("4"))
    signal = _run(strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    stop = _protective(signal, "stop_loss").get()
    # The next alert on the market carries a price through the stop: the paper exchange fires it.
    later = _run(strategy, action="buy", price=Decimal("63000"), volume=Decimal("0.01"), ticker="BTCUSDT.P")
    assert later.status == Signal.Status.EXECUTED
    protection_sweep()
    stop.refresh_from_db()
    assert stop.status == Order.Status.FILLED, stop.reason
    assert stop.reason == "closed by stop-loss"
    assert Fill.objects.filter(order=stop).count() == 1
    take = _protective(signal, "take_profit").get()
    assert take.status == Order.Status.CANCELLED  # its position is gone
    position = Position.objects.get(strategy=strategy, symbol=SYMBOL)
    # The second buy's 0.01 remains, the first was closed by its stop at a loss.
    assert position.qty == Decimal("0.01")
    assert position.realized_pnl < 0


def test_an_exit_alert_cancels_the_remaining_protection():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), take_profit_percent=Decimal("4"))
    signal = _run(strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    exit_signal = _run(strategy, action="close_long", price=Decimal("65500"))
    assert exit_signal.status == Signal.Status.EXECUTED, exit_signal.reason
    for order in _protective(signal):
        assert order.status == Order.Status.CANCELLED, order
        assert PaperOrder.objects.get(client_order_id=order.client_order_id).status == "cancelled"
    assert Position.objects.get(strategy=strategy, symbol=SYMBOL).qty == 0


def test_a_reversal_replaces_the_protection_with_the_new_sides():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"))
    long = _run(strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    short = _run(strategy, action="sell", price=Decimal("65000"), volume=Decimal("0.01"))
    assert short.status == Signal.Status.EXECUTED, short.reason
    assert _protective(long).get().status == Order.Status.CANCELLED
    new_stop = _protective(short).get()
    assert new_stop.status == Order.Status.OPEN and new_stop.side == "buy"
    assert new_stop.trigger_price > Decimal("65000")


def test_alert_levels_override_the_strategy_defaults():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"))
    signal = _run(
        strategy,
        action="buy",
        price=Decimal("65000"),
        protection={"stop_loss": {"price": "64000"}, "trailing_stop": {"percent": "1.5"}},
    )
    assert _protective(signal, "stop_loss").get().trigger_price == Decimal("64000")
    trail = _protective(signal, "trailing_stop").get()
    assert trail.status == Order.Status.OPEN and trail.trail_percent == Decimal("1.5")


def test_alert_levels_are_ignored_when_the_strategy_does_not_allow_overrides():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), alert_may_override_protection=False)
    signal = _run(strategy, action="buy", price=Decimal("65000"), protection={"stop_loss": {"price": "60000"}})
    assert _protective(signal, "stop_loss").get().trigger_price > Decimal("63000")


def test_a_stop_on_the_wrong_side_is_refused_before_anything_is_sent():
    strategy = StrategyFactory()
    signal = _run(strategy, action="buy", price=Decimal("65000"), protection={"stop_loss": {"price": "66000"}})
    assert signal.status == Signal.Status.FAILED
    assert "stop-loss must be below the entry" in signal.reason
    assert not Order.objects.filter(signal=signal).exists()
    assert not PaperOrder.objects.exists()
