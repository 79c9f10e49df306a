"""Following orders through a real worker: what the venue's private stream says is what the
engine records, without waiting for a poll — also when the stream beats the create's own
reply (a fill pushed while the reply is still on its way)."""

import pytest

from execution.models import Order
from signals.models import Signal
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
