"""Protective orders at the exchange, per venue, through real ccxt over HTTP against the
emulator (which checks signatures, validates side, trigger direction, reduce-only and sizes,
and fires trigger orders when its price moves).

Bybit V5: conditional market orders (triggerPrice + triggerDirection, reduceOnly, our
orderLinkId). Binance USD-M: algo orders STOP_MARKET / TAKE_PROFIT_MARKET /
TRAILING_STOP_MARKET (reduceOnly, our clientAlgoId)."""

from decimal import Decimal

import pytest
from django.utils.http import int_to_base36

from execution import events
from execution.engine import ledger
from execution.engine.protect import protection_after_commit, protection_sweep
from execution.models import Fill, Order, Position
from execution.services import signal_execute
from signals.models import Signal
from signals.outbox import signals_sweep
from strategies.models import TradingControl
from tests.conftest import wait_for
from tests.factories import StrategyFactory

from .conftest import KEY, finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BTC = "BTC/USDT:USDT"
VENUES = ["bybit", "binanceusdm"]
EMU_VENUE = {"bybit": "bybit", "binanceusdm": "binance"}


@pytest.fixture(params=VENUES)
def venue(request):
    return request.param


@pytest.fixture
def strategy(emu, venue):
    emu.set_price("BTCUSDT", "65000")
    return StrategyFactory(
        strategy_id="demo",
        account=make_account(emu, exchange=venue),
        stop_loss_percent=Decimal("2"),
        take_profit_percent=Decimal("4"),
    )


def run(send, **alert) -> Signal:
    signal_id = send(**alert)
    signal_execute(signal_id=signal_id)
    return Signal.objects.get(pk=signal_id)


def protective(signal, kind=None):
    rows = Order.objects.filter(signal=signal).exclude(protection="").order_by("leg")
    return list(rows.filter(protection=kind) if kind else rows)


def at_exchange(emu, order):
    """The emulator's own record of one of our orders (by client id)."""
    [found] = emu.orders(client_order_id=order.client_order_id)
    return found


def venue_qty(emu, venue) -> Decimal:
    return emu.position(BTC, account=KEY, venue=EMU_VENUE[venue]).size


def test_an_entry_gets_its_stop_and_take_profit_at_the_exchange(emu, venue, strategy, send):
    signal = run(send, action="buy", volume=0.01, price=65000)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    entry = Order.objects.get(signal=signal, protection="")
    [stop], [take] = protective(signal, "stop_loss"), protective(signal, "take_profit")
    assert stop.status == take.status == Order.Status.OPEN, (stop.reason, take.reason)
    assert stop.trigger_price == Decimal("63700.0") and take.trigger_price == Decimal("67600.0")
    for ours, direction in ((stop, "fall"), (take, "rise")):
        theirs = at_exchange(emu, ours)
        assert theirs.conditional and theirs.status == "Untriggered"
        assert (theirs.side, theirs.qty, theirs.reduce_only) == ("Sell", Decimal("0.01"), True)
        assert (theirs.trigger_price, theirs.trigger_direction) == (ours.trigger_price, direction)
        assert ours.exchange_order_id == theirs.order_id
        assert ours.protects == entry and ours.requested_qty == entry.filled_qty
    path = "algoOrder" if venue == "binanceusdm" else "order/create"
    assert len(emu.requests(path, venue=EMU_VENUE[venue], operation="create_order")) == (
        2 if path == "algoOrder" else 3
    )


def test_partial_fills_grow_the_protection(emu, venue, strategy, send):
    emu.add_fault("partial_fill", "create_order", fraction=0.5, fill_after_lookups=3, count=1)
    signal = run(send, action="buy", volume=0.02, price=65000)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    first, second = protective(signal, "stop_loss")
    assert (first.generation, first.requested_qty) == (1, Decimal("0.01"))
    assert (second.generation, second.requested_qty) == (2, Decimal("0.02"))
    assert second.status == Order.Status.OPEN
    assert first.status == Order.Status.CANCELLED  # replaced once the larger one was live
    assert at_exchange(emu, first).status == "Deactivated"
    assert (at_exchange(emu, second).status, at_exchange(emu, second).qty) == ("Untriggered", Decimal("0.02"))


def test_the_price_crossing_the_stop_closes_the_position_and_our_books_show_it(emu, venue, strategy, send):
    signal = run(send, action="buy", volume=0.01, price=65000)
    [stop], [take] = protective(signal, "stop_loss"), protective(signal, "take_profit")
    emu.set_price("BTCUSDT", "63000")  # through the stop (63700)
    assert venue_qty(emu, venue) == 0  # closed at the exchange, whatever our server does
    protection_sweep()
    stop.refresh_from_db()
    assert stop.status == Order.Status.FILLED and stop.reason == "closed by stop-loss"
    fill = Fill.objects.get(order=stop)
    assert (fill.qty, fill.price) == (Decimal("0.01"), Decimal("63000"))
    position = Position.objects.get(strategy=strategy, symbol=BTC)
    assert position.qty == 0
    assert position.realized_pnl == Decimal("-20")  # (63000 - 65000) x 0.01
    take.refresh_from_db()
    assert take.status == Order.Status.CANCELLED
    assert at_exchange(emu, take).status == "Deactivated"


def test_an_exit_alert_cancels_the_remaining_protection(emu, venue, strategy, send):
    signal = run(send, action="buy", volume=0.01, price=65000)
    closed = run(send, action="close_long", price=65000)
    assert closed.status == Signal.Status.EXECUTED, closed.reason
    for order in protective(signal):
        assert order.status == Order.Status.CANCELLED, order.reason
        assert at_exchange(emu, order).status == "Deactivated"
    assert venue_qty(emu, venue) == 0


def test_a_reversal_replaces_the_protection(emu, venue, strategy, send):
    long = run(send, action="buy", volume=0.01, price=65000)
    short = run(send, action="sell", volume=0.01, price=65000)
    assert short.status == Signal.Status.EXECUTED, short.reason
    assert all(o.status == Order.Status.CANCELLED for o in protective(long))
    [stop], [take] = protective(short, "stop_loss"), protective(short, "take_profit")
    assert (stop.side, stop.status, stop.trigger_price) == ("buy", Order.Status.OPEN, Decimal("66300.0"))
    assert (take.side, take.status, take.trigger_price) == ("buy", Order.Status.OPEN, Decimal("62400.0"))
    assert at_exchange(emu, stop).trigger_direction == "rise"
    assert venue_qty(emu, venue) == Decimal("-0.01")


def test_a_refused_protective_order_is_notified_and_the_position_flattened(emu, venue, strategy, send):
    told = []
    events.protection_failed.connect(lambda sender, **kw: told.append(kw["text"]), weak=False, dispatch_uid="t")
    try:
        emu.set_price("BTCUSDT", "66000")  # the alert's price (65000) is stale: the fill is at 66000
        signal = run(send, action="buy", volume=0.01, price=65000, take_profit=65500, stop_loss=64000)
        assert signal.status == Signal.Status.EXECUTED, signal.reason
        [take] = protective(signal, "take_profit")
        # A sell take-profit at 65500 with the price at 66000 would fire at once: refused.
        assert take.status == Order.Status.REJECTED
        assert "trigger" in take.reason.lower()
        assert told and "being flattened" in told[0] and "take-profit" in told[0]
        flatten = Signal.objects.get(origin=Signal.Origin.FLATTEN)
        signal_execute(signal_id=flatten.pk)
        flatten.refresh_from_db()
        assert flatten.status == Signal.Status.EXECUTED, flatten.reason
        assert venue_qty(emu, venue) == 0
        assert Position.objects.get(strategy=strategy, symbol=BTC).qty == 0
        [stop] = protective(signal, "stop_loss")
        assert stop.status == Order.Status.CANCELLED  # its position is gone
    finally:
        events.protection_failed.disconnect(dispatch_uid="t")


def test_a_stop_on_the_wrong_side_is_refused_before_anything_is_sent(emu, venue, strategy, send):
    signal = run(send, action="buy", volume=0.01, price=65000, stop_loss=66000)
    assert signal.status == Signal.Status.FAILED
    assert "stop-loss must be below the entry" in signal.reason
    assert not emu.requests(venue=EMU_VENUE[venue], operation="create_order")


def test_a_fill_recorded_by_a_process_that_died_before_placing_is_protected_by_the_sweeper(emu, venue, strategy, send):
    ledger.protection_listener_set(None)  # the process dies right after the fill's commit
    try:
        signal = run(send, action="buy", volume=0.01, price=65000)
    finally:
        ledger.protection_listener_set(protection_after_commit)
    stop = protective(signal, "stop_loss")[0]
    assert stop.status == Order.Status.PENDING  # the durable intent
    Order.objects.filter(pk=stop.pk).update(created_at=stop.created_at.replace(year=2020))
    Order.objects.filter(signal=signal).exclude(protection="").update(created_at=stop.created_at.replace(year=2020))
    protection_sweep()
    for order in protective(signal):
        assert order.status == Order.Status.OPEN, order.reason
        assert at_exchange(emu, order).status == "Untriggered"


def test_a_worker_killed_between_the_fill_and_the_stop_leaves_the_position_protected_after_restart(
    emu, venue, strategy, worker_factory, send
):
    env = {"EXCHANGE_TIMEOUT_SECONDS": "6", "ORDER_NOT_FOUND_GRACE_SECONDS": "1", "SIGNAL_LEASE_SECONDS": "3",
           "ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS": "1"}  # fmt: skip
    strategy.take_profit_percent = None
    strategy.save()
    signal_id = send(action="buy", volume=0.01, price=65000)
    # The id is deterministic: the install's tag, the signal and leg, the kind and generation.
    stop_id = f"tv{TradingControl.current().install_id}{int_to_base36(signal_id)}l1s1"
    # The stop's request hangs at the exchange (booked there, no answer): the worker is
    # killed while it waits.
    emu.add_fault("timeout_after_booking", client_order_id=stop_id, ms=20000, count=1)
    worker = worker_factory(env=env)
    wait_for(lambda: emu.orders(client_order_id=stop_id), message="the stop to reach the exchange")
    worker.kill()
    stop = Order.objects.get(client_order_id=stop_id)
    assert stop.status == Order.Status.SUBMITTING  # sent, outcome unknown to us
    worker_factory(env=env)
    # Its start-up sweep (and beat) resolves the stop by its client id: adopted, not resent.
    wait_for(
        lambda: (
            (signals_sweep(older_than_seconds=0), protection_sweep())
            and Order.objects.get(pk=stop.pk).status == Order.Status.OPEN
        ),
        timeout=30,
        interval=0.5,
        message="the stop to be adopted as live",
    )
    assert len(emu.orders(client_order_id=stop_id)) == 1
    assert finished(signal_id).status == Signal.Status.EXECUTED


def test_reconcile_reports_missing_protection_and_fix_restores_it(emu, venue, strategy, send):
    from io import StringIO

    from django.core.management import call_command

    signal = run(send, action="buy", volume=0.01, price=65000)
    [stop] = protective(signal, "stop_loss")
    # Someone cancels the stop on the exchange's website.
    emu.engine.cancel(emu.engine.account(EMU_VENUE[venue], KEY), category="linear", symbol="BTCUSDT",
                      order_id=stop.exchange_order_id)  # fmt: skip
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile", stdout=out, stderr=StringIO())
    report = out.getvalue()
    assert "protection" in report and "stop loss" in report and "[UNRESOLVED]" in report
    stop.refresh_from_db()
    assert stop.status == Order.Status.CANCELLED  # the exchange's truth, adopted

    call_command("reconcile", "--fix", stdout=StringIO(), stderr=StringIO())
    restored = protective(signal, "stop_loss")[-1]
    assert restored.pk != stop.pk and restored.status == Order.Status.OPEN, restored.reason
    assert restored.requested_qty == Decimal("0.01")
    assert at_exchange(emu, restored).status == "Untriggered"
    call_command("reconcile", stdout=StringIO(), stderr=StringIO())  # in sync now: no SystemExit


def test_a_stop_fired_at_the_exchange_is_booked_from_the_private_stream(emu, venue, strategy, fast_worker, send):
    signal = finished(send(action="buy", volume=0.01, price=65000))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    wait_for(
        lambda: all(o.status == Order.Status.OPEN for o in protective(signal)) and len(protective(signal)) == 2,
        message="the stop and take-profit to be live",
    )
    emu.set_price("BTCUSDT", "63000")
    # No sweep here: the worker hears the fill on the venue's order stream and books it.
    stop = wait_for(
        lambda: next((o for o in protective(signal, "stop_loss") if o.status == Order.Status.FILLED), None),
        timeout=10,
        message="the stop's fill to be booked",
    )
    assert stop.reason == "closed by stop-loss"
    assert Position.objects.get(strategy=strategy, symbol=BTC).qty == 0
    wait_for(
        lambda: protective(signal, "take_profit")[0].status == Order.Status.CANCELLED,
        message="the take-profit to be cancelled",
    )


def _single_venue_strategy(emu, exchange):
    emu.set_price("BTCUSDT", "65000")
    return StrategyFactory(strategy_id="demo", account=make_account(emu, exchange=exchange))


def test_a_binance_trailing_stop_follows_the_price_and_fires_on_the_retrace(emu, send):
    strategy = _single_venue_strategy(emu, "binanceusdm")
    signal = run(send, action="buy", volume=0.01, price=65000, trailing_stop={"percent": 1})
    [trail] = protective(signal, "trailing_stop")
    assert trail.status == Order.Status.OPEN and trail.trail_percent == Decimal("1")
    assert at_exchange(emu, trail).stop_kind == "TrailingStop"
    emu.set_price("BTCUSDT", "70000")  # the best price moves up: the stop now trails at 69300
    emu.set_price("BTCUSDT", "69500")
    assert venue_qty(emu, "binanceusdm") == Decimal("0.01")
    emu.set_price("BTCUSDT", "69200")
    assert venue_qty(emu, "binanceusdm") == 0
    protection_sweep()
    trail.refresh_from_db()
    assert trail.status == Order.Status.FILLED and trail.reason == "closed by trailing stop"
    assert Position.objects.get(strategy=strategy, symbol=BTC).realized_pnl == Decimal("42")  # (69200-65000) x 0.01


def test_a_bybit_trailing_stop_is_refused_before_anything_is_sent(emu, send):
    _single_venue_strategy(emu, "bybit")
    signal = run(send, action="buy", volume=0.01, price=65000, trailing_stop={"percent": 1})
    assert signal.status == Signal.Status.FAILED
    assert "trailing stop is not supported on bybit" in signal.reason
    assert not emu.requests(venue="bybit", operation="create_order")


def test_with_notify_an_unprotected_position_is_kept_and_said_so(emu, send):
    strategy = _single_venue_strategy(emu, "bybit")
    strategy.unprotected_action = "notify"
    strategy.save()
    told = []
    events.protection_failed.connect(lambda sender, **kw: told.append(kw["text"]), weak=False, dispatch_uid="n")
    try:
        emu.set_price("BTCUSDT", "66000")
        signal = run(send, action="buy", volume=0.01, price=65000, take_profit=65500)
        [take] = protective(signal, "take_profit")
        assert take.status == Order.Status.REJECTED and "110092" in take.reason
        assert told and "NOT protected" in told[0]
        assert not Signal.objects.filter(origin=Signal.Origin.FLATTEN).exists()
        assert venue_qty(emu, "bybit") == Decimal("0.01")
    finally:
        events.protection_failed.disconnect(dispatch_uid="n")
