"""Breakers: each one crossed engages its kill switch by itself — audited with the breaker as
the actor, notified (a real notifications worker delivering to stand-ins for Telegram and
Discord), shown with its reason on the dashboard — and the next order is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from execution.models import ExchangeAccount, Order
from execution.services import signal_execute
from signals.models import Signal
from strategies.dashboard import strategy_rows
from strategies.models import AuditEntry, Strategy
from strategies.services import strategy_resume
from tests.conftest import wait_for
from tests.factories import SignalFactory, StrategyFactory
from tests.ops.conftest import channel_env, channels_configured, fake_channels  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def notified(worker_factory, channels_configured):  # noqa: F811
    worker_factory(queues="notifications", env=channel_env(channels_configured))

    def _texts(min_count: int = 1) -> list[str]:
        wait_for(lambda: len(channels_configured.messages("telegram")) >= min_count, message="a notification delivered")
        return [m["body"]["text"] for m in channels_configured.messages("telegram")]

    return _texts


def run(strategy: Strategy, **fields) -> Signal:
    fields.setdefault("volume", Decimal("0.01"))
    signal = SignalFactory(strategy=strategy, **fields)
    signal_execute(signal_id=signal.pk)
    signal.refresh_from_db()
    return signal


def assert_tripped(owner, breaker: str, notified, *, scope: str = "strategy") -> None:
    owner.refresh_from_db()
    assert owner.halted and owner.halted_by == f"breaker:{breaker}", (owner.halted_by, owner.halt_reason)
    assert owner.halt_reason.startswith("breaker: ")
    audit = AuditEntry.objects.filter(target_type=scope, field="halted", new_value="True").get()
    assert audit.actor == f"breaker:{breaker}" and audit.note == owner.halt_reason
    [text] = [t for t in notified() if "kill switch ENGAGED" in t]
    assert f"breaker:{breaker}" in text and owner.halt_reason in text
    strategy = owner if scope == "strategy" else owner.strategies.first()
    [row] = [r for r in strategy_rows()[0] if r.strategy.pk == strategy.pk]
    assert row.state == "halted" and f"by breaker:{breaker}: {owner.halt_reason}" in row.halt_note


def assert_next_refused(strategy: Strategy) -> None:
    signal = run(strategy)
    assert signal.status == Signal.Status.BLOCKED, signal.reason
    assert not Order.objects.filter(signal=signal).exclude(status=Order.Status.CANCELLED).exists()


@pytest.mark.parametrize("scope", ["strategy", "account"])
def test_max_notional_per_order_refuses_the_order_before_it_is_sent(scope, notified):
    strategy = StrategyFactory(strategy_id="demo")
    owner = strategy if scope == "strategy" else strategy.account
    owner.breaker_max_order_notional = Decimal("500")
    owner.save()
    fine = run(strategy, volume=Decimal("0.007"), price=Decimal("65000"))  # 455 USDT
    assert fine.status == Signal.Status.EXECUTED, fine.reason

    crossing = run(strategy, volume=Decimal("0.01"), price=Decimal("65000"))  # 650 USDT
    order = Order.objects.get(signal=crossing)
    assert order.status == Order.Status.CANCELLED and order.submit_count == 0
    assert "not sent: breaker" in order.reason and "650.00" in order.reason
    assert not order.account.paper_orders.filter(client_order_id=order.client_order_id).exists()  # never sent
    assert crossing.status == Signal.Status.BLOCKED
    assert_tripped(owner, "order_notional", notified, scope=scope)
    assert_next_refused(strategy)


def test_max_orders_per_minute_refuses_the_one_too_many(notified):
    strategy = StrategyFactory(strategy_id="demo", breaker_max_orders_per_minute=2)
    for _ in range(2):
        assert run(strategy).status == Signal.Status.EXECUTED
    third = run(strategy)
    assert third.status == Signal.Status.BLOCKED
    assert Order.objects.get(signal=third).submit_count == 0
    assert_tripped(strategy, "orders_per_minute", notified)
    assert_next_refused(strategy)


@pytest.mark.parametrize("scope", ["strategy", "account"])
def test_refused_orders_in_a_row_engage_the_switch(scope, notified):
    strategy = StrategyFactory(strategy_id="demo")
    owner = strategy if scope == "strategy" else strategy.account
    owner.breaker_max_failed_orders = 2
    owner.save()
    # 10 BTC at 65,000 needs far more margin than the paper account's 10,000 USDT: refused.
    first = run(strategy, volume=Decimal("10"))
    assert first.status == Signal.Status.FAILED and not Strategy.objects.get(pk=strategy.pk).halted
    assert run(strategy).status == Signal.Status.EXECUTED  # a success in between resets the count
    run(strategy, volume=Decimal("10"))
    owner.refresh_from_db()
    assert not owner.halted
    run(strategy, volume=Decimal("10"))
    assert_tripped(owner, "failed_orders", notified, scope=scope)
    assert_next_refused(strategy)


def test_losing_trades_in_a_row_engage_the_switch_and_a_resume_starts_the_count_afresh(notified):
    strategy = StrategyFactory(strategy_id="demo", breaker_max_losing_trades=2)
    for price in ("64000", "63000"):
        assert run(strategy, action="buy", price=Decimal("65000")).status == Signal.Status.EXECUTED
        closed = run(strategy, action="close_long", price=Decimal(price))
        assert closed.status == Signal.Status.EXECUTED, closed.reason
        assert Order.objects.get(signal=closed).realized_pnl < 0
    assert_tripped(strategy, "losing_trades", notified)
    assert_next_refused(strategy)

    strategy_resume(strategy=strategy, actor="alice")
    assert run(strategy, action="buy", price=Decimal("65000")).status == Signal.Status.EXECUTED
    run(strategy, action="close_long", price=Decimal("64000"))  # one loss since the resume: below the limit
    strategy.refresh_from_db()
    assert not strategy.halted


def test_realised_loss_of_the_day_engages_the_switch(notified):
    strategy = StrategyFactory(strategy_id="demo", breaker_max_daily_loss=Decimal("15"))
    run(strategy, action="buy", price=Decimal("65000"))
    run(strategy, action="close_long", price=Decimal("65500"))  # a gain first
    run(strategy, action="buy", price=Decimal("65000"))
    run(strategy, action="close_long", price=Decimal("64000"))  # -10 and fees: the day still above -15
    strategy.refresh_from_db()
    assert not strategy.halted
    run(strategy, action="buy", price=Decimal("65000"))
    run(strategy, action="close_long", price=Decimal("64000"))
    day = sum(Order.objects.filter(strategy=strategy).exclude(realized_pnl=None).values_list("realized_pnl", flat=True))
    assert day < Decimal("-15")
    assert_tripped(strategy, "daily_loss", notified)
    assert_next_refused(strategy)


def test_a_test_signal_never_trips_a_breaker(db):
    from signals.services import signal_send_test

    strategy = StrategyFactory(strategy_id="demo", breaker_max_order_notional=Decimal("1"))
    test = signal_send_test(strategy=strategy, actor="tester")
    signal_execute(signal_id=test.pk)
    test.refresh_from_db()
    assert test.status == Signal.Status.EXECUTED
    assert not Strategy.objects.get(pk=strategy.pk).halted
    assert not ExchangeAccount.objects.get(pk=strategy.account_id).halted
