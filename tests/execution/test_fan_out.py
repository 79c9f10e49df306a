"""One alert, many accounts: a strategy's subscriptions through a real worker, real ccxt over
HTTP against the emulator (Bybit and Binance, signatures checked) and the paper exchange."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils.http import int_to_base36

from execution.models import Order, PaperOrder, Position
from signals.models import Signal
from signals.outbox import signals_sweep
from strategies.models import Subscription
from strategies.subscriptions import subscriptions_sync
from tests.conftest import wait_for
from tests.factories import ExchangeAccountFactory, StrategyFactory

from .conftest import KEY, finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BTC = "BTC/USDT:USDT"


@pytest.fixture
def subscribed(emu):
    """demo on three accounts: Bybit (its own, the alert's size), Binance (twice the alert's
    size) and paper (a fixed 0.005 BTC)."""
    emu.set_price("BTCUSDT", "65000")
    bybit = make_account(emu, exchange="bybit")
    binance = make_account(emu, exchange="binanceusdm")
    paper = ExchangeAccountFactory(label="paper-shadow")
    strategy = StrategyFactory(strategy_id="demo", account=bybit)
    Subscription.objects.create(strategy=strategy, account=bybit)
    Subscription.objects.create(strategy=strategy, account=binance, sizing_mode="multiplier", size_value=2)
    Subscription.objects.create(strategy=strategy, account=paper, sizing_mode="fixed_base", size_value="0.005")
    assert subscriptions_sync(strategy=strategy)
    return strategy, {"bybit": bybit, "binance": binance, "paper": paper}


def children_of(parent_id: int) -> dict[str, Signal]:
    def done():
        kids = list(Signal.objects.filter(parent_id=parent_id).select_related("subscription__account"))
        return kids if len(kids) == 3 and all(k.is_terminal for k in kids) else None

    return {k.subscription.account.label: k for k in wait_for(done, timeout=60, message="every account's run")}


def creates(emu, venue: str) -> list:
    return emu.requests(venue=venue, operation="create_order")


def test_one_alert_executes_once_on_each_subscription_with_its_own_size(emu, subscribed, fast_worker, send):
    strategy, accounts = subscribed
    parent = finished(send(action="buy", volume=0.01, price=65000))
    assert parent.status == Signal.Status.FANNED_OUT, parent.reason
    assert not parent.orders.exists()
    kids = children_of(parent.pk)
    sizes = {"bybit": Decimal("0.01"), "binance": Decimal("0.02"), "paper": Decimal("0.005")}
    for name, account in accounts.items():
        kid = kids[account.label]
        assert kid.status == Signal.Status.EXECUTED, (name, kid.reason)
        [order] = Order.objects.filter(signal=kid)
        assert order.account == account and order.filled_qty == sizes[name]
        assert order.client_order_id.endswith(f"{int_to_base36(parent.pk)}s{int_to_base36(kid.subscription_id)}l1")
        assert Position.objects.get(account=account, strategy=strategy, symbol=BTC).qty == sizes[name]
    assert len(creates(emu, "bybit")) == 1 and len(creates(emu, "binance")) == 1
    assert emu.position("BTCUSDT", account=KEY, venue="bybit").size == Decimal("0.01")
    assert emu.position("BTCUSDT", account=KEY, venue="binance").size == Decimal("0.02")
    assert PaperOrder.objects.filter(account=accounts["paper"]).count() == 1

    # The next alert of the market reads each account's own position: a close closes each.
    close = finished(send(action="close_long", price=65500))
    kids = children_of(close.pk)
    assert all(k.status == Signal.Status.EXECUTED for k in kids.values()), {k: v.reason for k, v in kids.items()}
    assert not Position.objects.filter(strategy=strategy).exclude(qty=0).exists()


def test_a_refused_order_on_one_account_leaves_the_others_executed(emu, subscribed, fast_worker, send):
    strategy, accounts = subscribed
    emu.add_fault("ret_code", "create_order", venue="binance", code=-2019, count=None)
    parent = finished(send(action="buy", volume=0.01, price=65000))
    kids = children_of(parent.pk)
    refused = kids[accounts["binance"].label]
    assert refused.status == Signal.Status.FAILED
    assert Order.objects.get(signal=refused).status == Order.Status.REJECTED
    assert len(creates(emu, "binance")) == 1  # never retried
    for name in ("bybit", "paper"):
        assert kids[accounts[name].label].status == Signal.Status.EXECUTED
    # The refusal holds up nothing: the next alert runs on every account again.
    emu.clear_faults()
    nxt = children_of(finished(send(action="buy", volume=0.01, price=65000)).pk)
    assert all(k.status == Signal.Status.EXECUTED for k in nxt.values())


def test_a_worker_killed_mid_fan_out_places_each_accounts_order_exactly_once(emu, subscribed, worker_factory, send):
    strategy, accounts = subscribed
    # Bybit books the order and answers only after 4 s: the worker dies with it in flight,
    # while the other accounts' runs may be anywhere.
    emu.add_fault("timeout_after_booking", "create_order", venue="bybit", ms=4000, count=1)
    # A lease longer than the 5 s renewal: a run that resolves an order by lookup (one that
    # died before reaching the venue) is not taken over mid-way on a busy machine. Binance may
    # reuse a client id, so its "not found" grace is long (30 s by default, more than one run
    # looks for): shortened here like the others, this test is about the fan-out.
    env = {
        "EXCHANGE_TIMEOUT_SECONDS": "8",
        "ORDER_NOT_FOUND_GRACE_SECONDS": "1",
        "ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS": "1",
        "SIGNAL_LEASE_SECONDS": "6",
    }
    worker = worker_factory(env=env)
    parent_id = send(action="buy", volume=0.01, price=65000)
    wait_for(lambda: creates(emu, "bybit"), message="the Bybit order to reach the emulator")
    worker.kill()
    worker_factory(env=env)
    wait_for(
        lambda: (
            signals_sweep(older_than_seconds=0) is not None
            and Signal.objects.filter(parent_id=parent_id).count() == 3
            and all(s.is_terminal for s in Signal.objects.filter(parent_id=parent_id))
        ),
        timeout=90,
        interval=0.5,
        message="every account's run to finish after the restart",
    )
    kids = children_of(parent_id)
    assert all(k.status == Signal.Status.EXECUTED for k in kids.values()), {k: v.reason for k, v in kids.items()}
    assert len(creates(emu, "bybit")) == 1 and len(creates(emu, "binance")) == 1
    assert len(emu.orders(venue="bybit")) == 1 and len(emu.orders(venue="binance")) == 1
    assert PaperOrder.objects.filter(account=accounts["paper"]).count() == 1
    assert Signal.objects.get(pk=parent_id).status == Signal.Status.FANNED_OUT
