"""`manage.py reconcile`: drift between the database and the exchange is shown, fixed on
request, audited, and makes the command fail until it is resolved."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from execution.models import Order, Position
from strategies.models import AuditEntry
from tests.factories import OrderFactory, SignalFactory, StrategyFactory

from .conftest import KEY, make_account

pytestmark = pytest.mark.django_db


def test_position_drift_is_reported_fixed_and_audited(emu, capsys):
    account = make_account(emu)
    emu.set_position("BTCUSDT", "0.05", "65000", account=KEY, venue="bybit")
    Position.objects.create(account=account, symbol="BTC/USDT:USDT", qty=Decimal("0.02"))
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile")
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "BTC/USDT:USDT" in out and "0.02" in out and "0.05" in out
    call_command("reconcile", "--fix")
    assert Position.objects.get(account=account, strategy=None).qty == Decimal("0.05")
    assert AuditEntry.objects.filter(target_id=account.label, field="position BTC/USDT:USDT", new_value="0.05").exists()
    call_command("reconcile")  # in sync now: exits 0


def test_unknown_order_is_resolved_by_its_client_id(emu):
    account = make_account(emu)
    strategy = StrategyFactory(account=account)
    signal = SignalFactory(strategy=strategy, status="processing")
    emu.set_price("BTCUSDT", "65000")
    from execution.exchanges import gateway_for

    gateway_for(account).create_order(
        symbol="BTC/USDT:USDT",
        side="buy",
        order_type="market",
        qty=Decimal("0.01"),
        price=None,
        reduce_only=False,
        client_order_id="tvrec1",
    )
    order = OrderFactory(
        signal=signal, strategy=strategy, account=account, client_order_id="tvrec1", status=Order.Status.UNKNOWN
    )
    Order.objects.filter(pk=order.pk).update(submitted_at=order.created_at - timedelta(minutes=5))
    call_command("reconcile", "--fix")
    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and order.filled_qty == Decimal("0.01")


def test_strategy_check_catches_mistakes_before_a_trade_does(emu):
    from execution.services import strategy_check

    account = make_account(emu)
    good = StrategyFactory(account=account, sizing_mode="fixed_base", size_value=Decimal("0.01"), leverage=5)
    assert strategy_check(strategy=good) == []
    tiny = StrategyFactory(account=account, sizing_mode="fixed_base", size_value=Decimal("0.0001"))
    assert "below BTC/USDT:USDT's minimum order of 0.001" in strategy_check(strategy=tiny)[0]
    unknown = StrategyFactory(account=account, symbol_override="NOPE/USDT:USDT")
    assert strategy_check(strategy=unknown)[0].startswith("symbol_override: NOPE/USDT:USDT is not a market")
    greedy = StrategyFactory(account=account, leverage=150)
    assert "above" in strategy_check(strategy=greedy)[0]


def test_admin_validation_uses_the_markets_a_worker_saved_without_calling_the_exchange(emu):
    from execution.exchanges import gateway_for
    from execution.services import strategy_validate_market

    account = make_account(emu, label="validate")
    from execution.exchanges.ccxt_gateway import MARKETS_SNAPSHOT_KEY
    from tvtrader.redisconn import key, redis_client

    redis_client().delete(key(MARKETS_SNAPSHOT_KEY.format(account.pk)))
    tiny = StrategyFactory(account=account, sizing_mode="fixed_base", size_value=Decimal("0.0001"))
    assert strategy_validate_market(strategy=tiny) == {}  # no snapshot yet: nothing to check against
    gateway_for(account).warm()  # what a worker does at start-up
    emu.clear_requests()
    problems = strategy_validate_market(strategy=tiny)
    assert "minimum order of 0.001" in problems["size_value"]
    wrong = StrategyFactory(account=account, symbol_override="NOPE/USDT:USDT")
    assert "not a market" in strategy_validate_market(strategy=wrong)["symbol_override"]
    assert emu.requests() == []  # validation never touched the exchange


def test_a_worker_whose_lease_was_taken_over_can_no_longer_renew_or_finish(db):
    from django.utils import timezone

    from execution.engine.claim import LeaseLost, claim, extend_lease, finish

    signal = SignalFactory(status="accepted")
    first = claim(signal.pk).run
    type(signal).objects.filter(pk=signal.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    second = claim(signal.pk).run
    assert (first.token, second.token) == (1, 2)
    with pytest.raises(LeaseLost):
        extend_lease(first, force=True)
    assert not finish(first, "executed")
    extend_lease(second, force=True)  # the new owner carries on
    assert finish(second, "executed")


def test_signals_for_the_same_market_wait_whatever_the_ticker_spelling_and_close_all_waits_for_all(db):
    from execution.engine.claim import claim

    def signal_claim(signal) -> bool:
        return claim(signal.pk).run is not None

    strategy = StrategyFactory()
    perp = SignalFactory(strategy=strategy, ticker="BTCUSDT.P", status="processing")
    plain = SignalFactory(strategy=strategy, ticker="BTCUSDT")
    other = SignalFactory(strategy=strategy, ticker="ETHUSDT.P")
    assert not signal_claim(plain)  # BTCUSDT waits for BTCUSDT.P: one market
    assert signal_claim(other)  # ETH does not wait for BTC
    flatten = SignalFactory(strategy=strategy, ticker="BTCUSDT.P", action="close_all")
    type(other).objects.filter(pk__in=[perp.pk]).update(status="executed")
    assert not signal_claim(flatten)  # plain (BTC) and other (ETH, processing) are still pending
    after = SignalFactory(strategy=strategy, ticker="SOLUSDT.P")
    assert not signal_claim(after)  # behind the close_all


def test_an_order_sent_then_put_back_to_pending_is_still_looked_up_and_booked(emu):
    """An order sent once and put back to `pending` for a resend (its first create looked
    lost) may have been booked by the venue after all: reconcile looks up every order that
    was ever sent, and books what the venue says, instead of reporting only the position."""
    account = make_account(emu)
    strategy = StrategyFactory(account=account)
    signal = SignalFactory(strategy=strategy, status="processing")
    emu.set_price("BTCUSDT", "65000")
    from execution.exchanges import gateway_for

    gateway_for(account).create_order(
        symbol="BTC/USDT:USDT",
        side="buy",
        order_type="market",
        qty=Decimal("0.01"),
        price=None,
        reduce_only=False,
        client_order_id="tvrec2",
    )
    order = OrderFactory(
        signal=signal, strategy=strategy, account=account, client_order_id="tvrec2", status=Order.Status.PENDING
    )
    Order.objects.filter(pk=order.pk).update(submit_count=1, submitted_at=order.created_at - timedelta(minutes=5))

    call_command("reconcile", "--fix")

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED and order.filled_qty == Decimal("0.01")
