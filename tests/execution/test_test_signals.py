"""A test signal shows the chain working and never changes what a trader watches: the
strategy's position and P&L, the account's paper book and balance, reconciliation."""

from decimal import Decimal

import pytest

from execution.exchanges import gateway_for
from execution.models import Order, PaperBalance, Position
from execution.reconcile import account_reconcile
from execution.services import signal_execute
from signals.models import Signal
from signals.services import signal_send_test
from tests.conftest import wait_for
from tests.factories import SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def _watched(strategy) -> dict:
    """What the dashboard, the API and reconciliation read for the strategy and its account."""
    account = strategy.account
    book = gateway_for(account)
    rows = {
        (p.strategy_id, p.symbol): (p.qty, p.avg_price, p.realized_pnl, p.fees_paid)
        for p in Position.objects.filter(account=account)
    }
    return {
        "positions": rows,
        "balance": list(PaperBalance.objects.filter(account=account).values_list("currency", "total")),
        "book": [(p.symbol, p.qty) for p in book.fetch_positions()],
        "equity": book.fetch_equity("USDT"),
        "open_orders": len(book.fetch_open_orders()),
    }


def _demo_with_a_position():
    strategy = StrategyFactory(strategy_id="demo")
    opened = SignalFactory(strategy=strategy, action="buy", volume=Decimal("0.02"), price=Decimal("65000"))
    signal_execute(signal_id=opened.pk)
    opened.refresh_from_db()
    assert opened.status == Signal.Status.EXECUTED, opened.reason
    return strategy


def test_a_test_signal_on_the_paper_demo_leaves_its_position_pnl_and_book_unchanged():
    strategy = _demo_with_a_position()
    before = _watched(strategy)
    assert before["positions"][(strategy.pk, "BTC/USDT:USDT")][0] == Decimal("0.02")

    for action in ("buy", "sell"):
        test = signal_send_test(strategy=strategy, actor="tester", action=action, volume="0.01")
        signal_execute(signal_id=test.pk)
        test.refresh_from_db()
        assert test.status == Signal.Status.EXECUTED, test.reason  # the chain really ran
        order = Order.objects.get(signal=test)
        assert order.status == Order.Status.FILLED and order.filled_qty == Decimal("0.01")
        assert order.purpose == Order.Purpose.OPEN  # planned as if flat: never a close of the real position

    assert _watched(strategy) == before
    report = account_reconcile(account=strategy.account)
    assert report.differences == []


def test_a_resting_scratch_order_is_not_among_the_books_open_orders():
    strategy = _demo_with_a_position()
    before = _watched(strategy)
    scratch = gateway_for(strategy.account, scratch=True)
    state = scratch.create_order(
        symbol="BTC/USDT:USDT",
        side="buy",
        order_type="limit",
        qty=Decimal("0.01"),
        price=Decimal("60000"),
        reduce_only=False,
        client_order_id="tvscratch1",
        signal_price=Decimal("65000"),
    )
    assert state.status == "open"
    assert _watched(strategy) == before
    assert [o.client_order_id for o in scratch.fetch_open_orders()] == ["tvscratch1"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_send_a_test_signal_through_a_real_worker_leaves_the_demo_position_alone(worker_factory):
    strategy = _demo_with_a_position()
    before = _watched(strategy)
    worker_factory()
    test = signal_send_test(strategy=strategy, actor="tester", action="buy")

    def done():
        test.refresh_from_db()
        return test if test.is_terminal else None

    wait_for(done, message="test signal executed")
    assert test.status == Signal.Status.EXECUTED, test.reason
    assert Order.objects.get(signal=test).status == Order.Status.FILLED
    assert _watched(strategy) == before


def test_a_test_signal_on_a_strategy_with_several_accounts_changes_none_of_them():
    from strategies.models import Subscription
    from strategies.subscriptions import subscriptions_sync
    from tests.factories import ExchangeAccountFactory

    strategy = _demo_with_a_position()
    shadow = ExchangeAccountFactory(label="shadow")
    Subscription.objects.create(strategy=strategy, account=strategy.account)
    Subscription.objects.create(strategy=strategy, account=shadow, sizing_mode="multiplier", size_value=2)
    subscriptions_sync(strategy=strategy)
    before = _watched(strategy)
    test = signal_send_test(strategy=strategy, actor="tester", action="buy", volume="0.01")
    signal_execute(signal_id=test.pk)
    kids = list(Signal.objects.filter(parent=test))
    assert len(kids) == 2 and all(k.is_test and k.status == Signal.Status.EXECUTED for k in kids)
    assert _watched(strategy) == before
    assert not Position.objects.filter(account=shadow).exists()
