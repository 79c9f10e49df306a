"""Past one machine: two worker processes on separate queues (as on two hosts), one
PostgreSQL and one Redis. Signals are routed to a queue per exchange account; ordering and
the venue's rate limit hold because both live in the shared stores, not in a worker."""

from decimal import Decimal

import pytest

from execution.models import Order
from execution.routing import queue_for_signal, queue_name_for_account
from signals.models import Signal
from tests.factories import SignalFactory, StrategyFactory

from .conftest import FAST_WORKER_ENV, finished, make_account

pytestmark = pytest.mark.django_db(transaction=True)

COINS = ["BTC", "ETH", "SOL", "LINK", "AVAX", "DOT"]


@pytest.mark.slow
def test_two_workers_on_separate_queues_keep_ordering_and_the_shared_rate_limit(emu, worker_factory, send, settings):
    # Two account rows on one venue API key (e.g. two strategies' books on one sub-account):
    # the venue counts their orders together, so they must share one bucket.
    first = make_account(emu, label="desk-a", max_orders_per_second=Decimal("3"))
    second = make_account(emu, label="desk-b", max_orders_per_second=Decimal("3"))
    StrategyFactory(strategy_id="demo", account=first)
    StrategyFactory(strategy_id="other", account=second)
    env = {**FAST_WORKER_ENV, "EXECUTION_QUEUE_PER_ACCOUNT": "true"}
    host_a = worker_factory(queues=queue_name_for_account(first.pk), env=env)
    host_b = worker_factory(queues=queue_name_for_account(second.pk), env=env)
    settings.EXECUTION_QUEUE_PER_ACCOUNT = True
    ids = []
    for coin in COINS:
        for strategy_id in ("demo", "other"):
            ids.append(
                (
                    strategy_id,
                    coin,
                    "buy",
                    send(action="buy", ticker=f"{coin}USDT.P", volume=1, strategy_id=strategy_id),
                )
            )
            ids.append(
                (strategy_id, coin, "close", send(action="close_long", ticker=f"{coin}USDT.P", strategy_id=strategy_id))
            )
    # 24 orders at 3 a second take 8 s; the bound is generous so a busy machine (the whole
    # suite, other work) slows the test down without failing it — it waits on the outcome.
    for *_, signal_id in ids:
        signal = finished(signal_id, timeout=180)
        assert signal.status == Signal.Status.EXECUTED, signal.reason
    # Each close ran after its entry had filled, never overtaking it.
    for strategy_id in ("demo", "other"):
        for coin in COINS:
            entry, close = Order.objects.filter(strategy__strategy_id=strategy_id, symbol=f"{coin}/USDT:USDT").order_by(
                "signal_id"
            )
            assert (entry.side, close.side) == ("buy", "sell")
            assert entry.closed_at <= close.submitted_at
    # Both hosts traded, and together they never exceeded the key's 3 orders a second.
    assert "execution.execute_signal" in host_a.log() and "execution.execute_signal" in host_b.log()
    times = sorted(r.recv_wall for r in emu.requests(operation="create_order"))
    assert len(times) == 24
    busiest = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
    assert busiest <= 3


def test_queue_per_account_routing_names_the_accounts_queue(db):
    strategy = StrategyFactory()
    signal = SignalFactory(strategy=strategy)
    assert queue_for_signal(signal.pk) == f"orders.account-{strategy.account_id}"
