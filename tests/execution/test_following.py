"""Following orders through a real worker: what the venue's private stream says is what the
engine records, without waiting for a poll — also when the stream beats the create's own
reply (a fill pushed while the reply is still on its way)."""

import pytest

from execution.models import Order
from signals.models import Signal
from tests.conftest import wait_for
from tests.factories import StrategyFactory

from .conftest import finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def lookups(emu, order: Order) -> list:
    return [
        r for r in emu.requests(venue="bybit", client_order_id=order.client_order_id) if r.operation != "create_order"
    ]


def test_a_fill_the_stream_reports_before_the_create_reply_is_recorded_without_a_lookup(emu, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    StrategyFactory(strategy_id="demo", account=make_account(emu))
    # The first order starts the account's stream; the second is the one under test.
    assert finished(send(action="buy", volume=0.01)).status == Signal.Status.EXECUTED
    # The venue books and fills the order (and pushes the fill on the stream) at once, but
    # holds the create's reply 0.5 s: the fill reaches the worker before the reply does.
    emu.add_fault("timeout_after_booking", "create_order", ms=500, count=1, venue="bybit")
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.FILLED and order.submit_count == 1
    # Known from the stream: no lookup of the order, no resend.
    assert lookups(emu, order) == []
    assert len(emu.requests(venue="bybit", operation="create_order", client_order_id=order.client_order_id)) == 1


def test_an_entry_goes_out_behind_a_resting_entry_of_the_same_side_and_a_close_still_waits(emu, worker_factory, send):
    """A second buy's plan is the same whether the first has filled or not, so it goes as soon
    as the first is acknowledged; a close_long is sized from the position and waits."""
    emu.set_price("BTCUSDT", "65000")
    StrategyFactory(
        strategy_id="demo",
        account=make_account(emu),
        order_type="limit",
        limit_offset_bps=100,  # rests on the book
        limit_timeout_seconds=60,
    )
    worker = worker_factory()
    first = send(action="buy", volume=0.01, price=65000)
    wait_for(
        lambda: Order.objects.filter(signal_id=first, status=Order.Status.OPEN).exists(),
        message="the first entry to rest, acknowledged",
    )
    second = send(action="buy", volume=0.02, price=65000)
    wait_for(
        lambda: Order.objects.filter(signal_id=second, status=Order.Status.OPEN).exists(),
        message="the second entry at the venue while the first rests",
    )
    assert Order.objects.get(signal_id=first).status == Order.Status.OPEN  # not filled, still followed
    assert [
        o.side.lower() for o in emu.orders(client_order_id=Order.objects.get(signal_id=second).client_order_id)
    ] == ["buy"]

    close = send(action="close_long", price=65000)
    worker.logged(f"signal={close} status=accepted waits_for=")
    assert not Order.objects.filter(signal_id=close).exists()
    assert Signal.objects.get(pk=close).status == Signal.Status.ACCEPTED
