""" "Never received" is proven, never assumed — and a resend looks again at the moment it leaves.

The case from the fault harness: a create times out and the venue books it late; a lookup
fails (503), the next says "not found"; the resend is decided, then delayed (here by the
account's rate limit) past the moment the venue books the original. On a venue that
accepts a reused client id once the first order is closed (Binance), a resend on the old
"not found" would place a second order. The resend must look again first and adopt.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import Order
from signals.models import Signal
from signals.outbox import signals_sweep
from tests.conftest import wait_for
from tests.factories import StrategyFactory

from .conftest import finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RESEND_ENV = {
    "EXCHANGE_TIMEOUT_SECONDS": "1",
    "ORDER_NOT_FOUND_GRACE_SECONDS": "1",
    "ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS": "1.5",
    "SIGNAL_LEASE_SECONDS": "20",
}


def creates(emu, client_order_id: str) -> list:
    return [r for r in emu.requests(operation="create_order") if r.client_order_id == client_order_id]


def test_a_late_booked_create_is_adopted_by_the_last_look_before_the_resend(emu, worker_factory, send):
    # One order per 10 s: the resend, decided ~3 s after the first send, waits for its slot
    # until ~10 s — well after the venue booked the original at ~6 s.
    account = make_account(emu, exchange="binanceusdm", max_orders_per_second=Decimal("0.1"))
    StrategyFactory(strategy_id="demo", account=account)
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("latency_ms", "create_order", ms=6000, count=1)  # times out at 1 s, booked at 6 s
    emu.add_fault("http_5xx_before_booking", "query_order", status=503, count=1)  # the first look fails
    worker = worker_factory(env=RESEND_ENV)

    signal = finished(send(action="buy", volume=0.01), timeout=40)

    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.FILLED and order.filled_qty == Decimal("0.01")
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1  # exactly one order at the venue
    assert len(creates(emu, order.client_order_id)) == 1  # and no second create ever left
    log = worker.logged("order_not_received", "order_found")
    # It was decided, then the last look adopted the original instead of resending.
    assert log.index("order_not_received") < log.rindex("order_found")
    assert order.submit_count == 1


def test_a_create_that_never_reached_the_venue_is_resent_once_after_the_grace(emu, worker_factory, send):
    account = make_account(emu, exchange="binanceusdm")
    StrategyFactory(strategy_id="demo", account=account)
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("drop_connection", "create_order", when="before", count=1)  # lost before the venue
    worker = worker_factory(env=RESEND_ENV)

    signal = finished(send(action="buy", volume=0.01), timeout=40)

    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 2
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1
    sent = creates(emu, order.client_order_id)
    assert len(sent) == 2
    # Not before the first request could no longer arrive (timeout) plus the grace.
    assert sent[1].recv_wall - sent[0].recv_wall >= 1 + 1.5
    worker.logged("order_not_received")


def test_a_not_found_grace_longer_than_one_run_still_ends_in_the_resend(emu, worker_factory, send):
    # On a venue that reuses client ids the grace (here 22 s) outlasts one run's lookups
    # (~18 s): the run leaves the order to the sweeper, and the next run must continue the
    # same "not found" clock — not start it again, which would leave the alert waiting forever.
    account = make_account(emu, exchange="binanceusdm")
    StrategyFactory(strategy_id="demo", account=account)
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("drop_connection", "create_order", when="before", count=1)  # lost before the venue
    worker_factory(env={**RESEND_ENV, "ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS": "22", "SIGNAL_LEASE_SECONDS": "6"})

    signal_id = send(action="buy", volume=0.01)
    wait_for(
        lambda: (signals_sweep(older_than_seconds=0), Signal.objects.get(pk=signal_id).is_terminal)[1],
        timeout=120,
        interval=1,
        message="the resend after a grace spanning two runs",
    )
    signal = finished(signal_id)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 2 and order.not_found_since is None
    sent = creates(emu, order.client_order_id)
    assert len(sent) == 2 and len(emu.orders(client_order_id=order.client_order_id)) == 1
    assert sent[1].recv_wall - sent[0].recv_wall >= 1 + 22
