"""Signals become exchange orders: real worker, real ccxt over HTTP, the local emulator
checking signatures, faults injected at the emulator."""

from decimal import Decimal

import pytest
from django.utils import timezone

from execution.models import Fill, Order, Position
from signals.models import Signal
from signals.outbox import signals_sweep
from strategies.services import strategy_halt
from tests.conftest import wait_for

from .conftest import FAST_WORKER_ENV, KEY, finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def creates(emu, symbol=None):
    return emu.requests(operation="create_order", symbol=symbol)


def test_buy_on_bybit_perpetual_places_one_signed_order_and_records_the_fill(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    signal = finished(send(action="buy", volume=0.01, price=65000))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.FILLED
    assert order.filled_qty == Decimal("0.01")
    assert order.avg_price == Decimal("65000")
    assert order.exchange_order_id
    ledger = emu.orders(client_order_id=order.client_order_id)
    assert len(ledger) == 1 and ledger[0].symbol == "BTCUSDT"
    assert Fill.objects.get(order=order).qty == Decimal("0.01")
    assert emu.position("BTCUSDT", account=KEY, venue="bybit").size == Decimal("0.01")
    assert Position.objects.get(strategy=emu_strategy, symbol="BTC/USDT:USDT").qty == Decimal("0.01")
    # The latency chain is complete.
    assert signal.started_at and signal.sent_at and signal.acked_at and signal.first_fill_at and signal.filled_at
    assert signal.received_at <= signal.started_at <= signal.sent_at <= signal.acked_at


def test_sell_while_long_closes_then_reverses_in_two_ordered_legs(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    assert finished(send(action="buy", volume=0.01)).status == Signal.Status.EXECUTED
    signal = finished(send(action="sell", volume=0.02))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    close, entry = Order.objects.filter(signal=signal).order_by("leg")
    assert (close.side, close.reduce_only, close.requested_qty) == ("sell", True, Decimal("0.01"))
    assert (entry.side, entry.reduce_only, entry.requested_qty) == ("sell", False, Decimal("0.02"))
    close_req, entry_req = [
        r for r in creates(emu) if r.client_order_id in (close.client_order_id, entry.client_order_id)
    ]
    assert close_req.client_order_id == close.client_order_id  # the close reached the venue first
    assert emu.position("BTCUSDT", account=KEY, venue="bybit").size == Decimal("-0.02")
    assert Position.objects.get(strategy=emu_strategy, symbol="BTC/USDT:USDT").qty == Decimal("-0.02")


def test_close_long_and_close_all_flatten_and_close_short_while_flat_is_skipped(emu, emu_strategy, fast_worker, send):
    emu.set_price("ETHUSDT", "3000")
    emu.set_price("BTCUSDT", "65000")
    assert finished(send(action="buy", ticker="ETHUSDT.P", volume=0.5, price=3000)).status == "executed"
    assert finished(send(action="buy", ticker="BTCUSDT.P", volume=0.01)).status == "executed"
    skipped = finished(send(action="close_short", ticker="BTCUSDT.P"))
    assert skipped.status == Signal.Status.SKIPPED and "no short position" in skipped.reason
    closed = finished(send(action="close_long", ticker="ETHUSDT.P", price=3000))
    assert closed.status == Signal.Status.EXECUTED
    assert emu.position("ETHUSDT", account=KEY, venue="bybit").size == 0
    flat = finished(send(action="close_all", ticker="BTCUSDT.P"))
    assert flat.status == Signal.Status.EXECUTED
    assert emu.position("BTCUSDT", account=KEY, venue="bybit").size == 0
    assert not Position.objects.filter(strategy=emu_strategy).exclude(qty=0).exists()


def test_leverage_is_set_before_the_order_and_a_refused_one_sends_nothing(emu, emu_strategy, fast_worker, send):
    """The strategy's leverage reaches the venue before its first order, with the order rows
    already written; a leverage the venue refuses stops the signal before any order is sent,
    and says why."""
    emu.set_price("BTCUSDT", "65000")
    emu.set_price("SOLUSDT", "150")
    emu_strategy.leverage = 5
    emu_strategy.save()
    signal = finished(send(action="buy", volume=0.01, price=65000))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    operations = [r.operation for r in emu.requests() if r.operation in ("set_leverage", "create_order")]
    assert operations == ["set_leverage", "create_order"]
    assert emu.requests(operation="set_leverage")[0].params["buyLeverage"] == "5"

    emu_strategy.leverage = 90  # SOL's maximum on the venue is 75
    emu_strategy.save()
    signal = finished(send(action="buy", ticker="SOLUSDT.P", volume=1, price=150))
    assert signal.status == Signal.Status.FAILED
    assert "could not set leverage 90x on SOL/USDT:USDT" in signal.reason
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.CANCELLED and order.reason.startswith("not sent: could not set leverage")
    assert order.submit_count == 0 and signal.sent_at is None
    assert creates(emu, symbol="SOLUSDT") == []


def test_spot_buy_and_sell_on_a_spot_account(emu, fast_worker, send):
    from tests.factories import StrategyFactory

    StrategyFactory(strategy_id="demo", account=make_account(emu, market_type="spot"))
    emu.set_price("BTCUSDT", "65000")
    bought = finished(send(action="buy", ticker="BTCUSDT", volume=0.002))
    assert bought.status == Signal.Status.EXECUTED, bought.reason
    assert Order.objects.get(signal=bought).symbol == "BTC/USDT"
    sold = finished(send(action="sell", ticker="BTCUSDT", volume=0.002))
    assert sold.status == Signal.Status.EXECUTED, sold.reason
    sell = Order.objects.get(signal=sold)
    assert sell.side == "sell" and not sell.reduce_only  # spot has no reduce-only flag
    short = finished(send(action="sell", ticker="BTCUSDT", volume=0.002))
    assert short.status == Signal.Status.SKIPPED and "spot" in short.reason


def test_a_close_that_arrived_first_is_never_overtaken_by_the_entry_behind_it(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    assert finished(send(action="buy", volume=0.01)).status == "executed"
    # The close is slow at the venue; a system that ran both at once would place the new
    # entry first.
    emu.add_fault("latency_ms", "create_order", ms=800, count=1)
    close_id = send(action="close_long")
    entry_id = send(action="buy", volume=0.01)
    close, entry = finished(close_id), finished(entry_id)
    assert close.status == entry.status == Signal.Status.EXECUTED
    close_order = Order.objects.get(signal=close)
    entry_order = Order.objects.get(signal=entry)
    requests = {r.client_order_id: r.recv_mono for r in creates(emu)}
    assert requests[close_order.client_order_id] < requests[entry_order.client_order_id]
    assert close.finished_at <= entry.started_at


def test_kill_switch_engaged_while_signals_are_queued_blocks_them_all(emu, emu_strategy, worker_factory, send):
    emu.set_price("BTCUSDT", "65000")
    queued = [send(action="buy", volume=0.001, ticker=f"{coin}USDT.P") for coin in ("BTC", "ETH", "SOL")]
    strategy_halt(strategy=emu_strategy, actor="test", reason="CPI")
    worker_factory(env={"SIGNAL_LEASE_SECONDS": "6"})
    for signal_id in queued:
        signal = finished(signal_id)
        assert signal.status == Signal.Status.BLOCKED
        assert "kill switch" in signal.reason
    assert creates(emu) == []
    assert not Order.objects.exists()


def test_timeout_after_booking_is_resolved_by_lookup_without_a_second_order(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("timeout_after_booking", "create_order", ms=3000, count=1)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 1
    assert order.lookup_count >= 1
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1
    assert len(creates(emu)) == 1


def test_5xx_before_booking_is_resent_once_with_the_same_client_id(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("http_5xx_before_booking", "create_order", status=503, count=1)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 2
    sent = creates(emu)
    assert len(sent) == 2 and {r.client_order_id for r in sent} == {order.client_order_id}
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1


def test_5xx_after_booking_is_not_resent(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("http_5xx_after_booking", "create_order", status=502, count=1)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 1 and len(creates(emu)) == 1


def test_a_rate_limit_reply_backs_off_and_places_the_order_exactly_once(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("ret_code", "create_order", code=10006, count=1)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1
    assert order.submit_count == 2


def test_insufficient_funds_fails_once_with_the_venues_reason(emu, emu_strategy, fast_worker, send):
    emu.add_fault("ret_code", "create_order", code=110007, count=None)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.FAILED
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.REJECTED
    assert "insufficient funds" in order.reason.lower()
    assert "insufficient funds" in signal.reason.lower()
    assert len(creates(emu)) == 1  # never retried


def test_partial_fill_is_recorded_as_it_arrives_and_followed_to_the_end(emu, emu_strategy, fast_worker, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("partial_fill", "create_order", fraction=0.5, fill_after_lookups=3, count=1)
    signal = finished(send(action="buy", volume=0.02))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.filled_qty == Decimal("0.02")
    fills = list(Fill.objects.filter(order=order).order_by("id"))
    assert [f.qty for f in fills] == [Decimal("0.01"), Decimal("0.01")]


def test_a_limit_order_left_open_past_its_timeout_is_cancelled_keeping_what_filled(
    emu, emu_strategy, fast_worker, send
):
    emu_strategy.order_type = "limit"
    emu_strategy.limit_offset_bps = 100  # 1% below: rests
    emu_strategy.limit_timeout_seconds = 2
    emu_strategy.save()
    emu.set_price("BTCUSDT", "65000")
    signal = finished(send(action="buy", volume=0.01, price=65000))
    assert signal.status == Signal.Status.FAILED
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.CANCELLED
    assert order.limit_price == Decimal("64350.0")
    assert emu.orders(client_order_id=order.client_order_id)[0].status == "Cancelled"


def test_wrong_api_secret_is_a_clear_misconfiguration_not_a_retry(emu, fast_worker, send):
    from tests.factories import StrategyFactory

    account = make_account(emu)
    account.set_credentials(api_secret="not-the-secret")
    account.save()
    StrategyFactory(strategy_id="demo", account=account)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.FAILED
    assert "misconfigured" in signal.reason.lower() or "authentication" in signal.reason.lower()


def test_a_worker_killed_mid_order_loses_nothing_and_duplicates_nothing(emu, emu_strategy, worker_factory, send):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("timeout_after_booking", "create_order", ms=4000, count=1)
    env = {"EXCHANGE_TIMEOUT_SECONDS": "8", "ORDER_NOT_FOUND_GRACE_SECONDS": "1", "SIGNAL_LEASE_SECONDS": "3"}
    worker = worker_factory(env=env)
    signal_id = send(action="buy", volume=0.01)
    wait_for(lambda: creates(emu), message="the order to reach the emulator")
    worker.kill()  # SIGKILL while the create request is in flight (already booked)
    signal = Signal.objects.get(pk=signal_id)
    assert signal.status == Signal.Status.PROCESSING
    worker_factory(env=env)
    # The lease runs out; the sweeper hands the signal to the new worker, which looks the
    # order up by its client id instead of sending it again.
    wait_for(
        lambda: signals_sweep(older_than_seconds=0) or Signal.objects.get(pk=signal_id).is_terminal,
        timeout=20,
        interval=0.5,
        message="the sweeper to re-queue the signal",
    )
    signal = finished(signal_id)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1
    assert len(creates(emu)) == 1


def _limit_order_resting_on_a_worker(emu, strategy, worker_factory, send, env, *, timeout: int):
    """A worker following a buy limit 1% below the market (it rests on the book until its
    `timeout` cancels it). Returns the worker and the signal id."""
    strategy.order_type = "limit"
    strategy.limit_offset_bps = 100
    strategy.limit_timeout_seconds = timeout
    strategy.save()
    emu.set_price("BTCUSDT", "65000")
    worker = worker_factory(env=env)
    signal_id = send(action="buy", volume=0.01, price=65000)
    wait_for(
        lambda: Order.objects.filter(signal_id=signal_id, status=Order.Status.OPEN).exists(),
        message="the order to be acknowledged and followed",
    )
    return worker, signal_id


def test_a_worker_stopped_while_following_hands_the_signal_back_at_once(emu, emu_strategy, worker_factory, send):
    """The pool thread sends and a follower thread follows. A warm shutdown (systemd stop,
    deploy) must not leave the signal leased to a worker that is gone: the follower releases
    it, and the next worker resumes following the same order without sending another."""
    env = {"SIGNAL_LEASE_SECONDS": "60"}
    worker, signal_id = _limit_order_resting_on_a_worker(emu, emu_strategy, worker_factory, send, env, timeout=4)
    worker.logged("signal_follow_later")
    worker.stop()  # SIGTERM: warm shutdown
    signal = Signal.objects.get(pk=signal_id)
    assert signal.status == Signal.Status.PROCESSING
    assert signal.lease_until <= timezone.now(), "released, not left for 60 s"
    assert "signal_follow_released" in worker.log()

    worker_factory(env=env)  # its start-up sweep resumes released signals at once
    signal = finished(signal_id)
    assert signal.status == Signal.Status.FAILED  # the limit never filled: cancelled at its timeout
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.CANCELLED
    assert len(creates(emu)) == 1


def test_a_worker_killed_while_following_is_taken_over_by_the_next_at_once(emu, emu_strategy, worker_factory, send):
    """SIGKILL (the out-of-memory killer) leaves no chance to release the lease. The next
    worker on the same host sees its owner is gone and resumes the signal at once instead of
    after the 60 s lease, following the same order without sending another."""
    env = {"SIGNAL_LEASE_SECONDS": "60"}
    worker, signal_id = _limit_order_resting_on_a_worker(emu, emu_strategy, worker_factory, send, env, timeout=3)
    worker.kill()  # SIGKILL: nothing released
    signal = Signal.objects.get(pk=signal_id)
    assert signal.status == Signal.Status.PROCESSING and signal.lease_until > timezone.now()
    assert signal.lease_owner

    successor = worker_factory(env=env)
    signal = finished(signal_id, timeout=20)  # not 60 s
    assert signal.status == Signal.Status.FAILED  # the limit never filled: cancelled at its timeout
    assert Order.objects.get(signal=signal).status == Order.Status.CANCELLED
    assert len(creates(emu)) == 1
    successor.logged("dead_worker_leases_released signals=1")


def test_a_resting_limit_order_does_not_hold_up_following_other_signals(emu, emu_strategy, worker_factory, send):
    """Followers take turns (at most FOLLOW_SLICE_SECONDS per signal): with a single follower
    thread busy with a limit order resting on the book, another strategy's market order is
    still followed to its fill and its signal finished, long before the limit order's timeout."""
    from tests.factories import StrategyFactory

    emu_strategy.order_type = "limit"
    emu_strategy.limit_offset_bps = 100  # rests
    emu_strategy.limit_timeout_seconds = 20
    emu_strategy.save()
    StrategyFactory(strategy_id="other", account=emu_strategy.account)
    emu.set_price("BTCUSDT", "65000")
    emu.set_price("ETHUSDT", "3000")
    worker = worker_factory(env={**FAST_WORKER_ENV, "EXECUTION_FOLLOW_THREADS": "1"})
    resting = send(action="buy", volume=0.01, price=65000)
    wait_for(
        lambda: Order.objects.filter(signal_id=resting, status=Order.Status.OPEN).exists(),
        message="the limit order to rest",
    )
    market = send(strategy_id="other", ticker="ETHUSDT.P", action="buy", volume=0.1, price=3000)
    signal = finished(market, timeout=12)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    assert Order.objects.get(signal_id=resting).status == Order.Status.OPEN  # still resting, still followed
    assert Signal.objects.get(pk=resting).status == Signal.Status.PROCESSING
    assert "follow_failed" not in worker.log()
