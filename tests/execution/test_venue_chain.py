"""Bitget and OKX, proven like Bybit: alerts through the webhook, the engine's public entry
points (`signal_execute` in-process, or a real Celery worker for the fault cases), real ccxt
over HTTP, and the emulator checking key, secret and passphrase signatures.

Every test runs on both venues. The two differ where it matters: OKX counts perpetuals in
contracts of ctVal (0.01 BTC, 1000 DOGE) in lots of 0.01 contract; Bitget counts in the base
coin; in hedge mode Bitget names the position with side + tradeSide (close long = buy + Close),
OKX with posSide (close long = sell + long)."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from execution.exchanges import client_order_id_problem
from execution.models import ExchangeAccount, Fill, Order, Position
from execution.services import account_test_connection, signal_execute
from signals.models import Signal
from signals.outbox import signals_sweep
from tests.conftest import wait_for
from tests.factories import StrategyFactory

from .conftest import KEY, finished, make_account

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

VENUES = ["bitget", "okx"]
BTC, ETH, DOGE = "BTC/USDT:USDT", "ETH/USDT:USDT", "DOGE/USDT:USDT"


@pytest.fixture(params=VENUES)
def venue(request):
    return request.param


@pytest.fixture
def strategy(emu, venue):
    emu.set_price("BTCUSDT", "65000")
    emu.set_price("ETHUSDT", "3000")
    return StrategyFactory(strategy_id="demo", account=make_account(emu, exchange=venue))


def run(send, **alert) -> Signal:
    """One alert through the webhook, executed by the engine's entry point in this process."""
    signal_id = send(**alert)
    signal_execute(signal_id=signal_id)
    return Signal.objects.get(pk=signal_id)


def creates(emu, venue, **filters) -> list:
    return emu.requests(venue=venue, operation="create_order", **filters)


def sent(emu, venue) -> list[dict]:
    """The create bodies as the venue received them."""
    return [r.params for r in creates(emu, venue)]


def size_of(body: dict, venue: str) -> str:
    return body["size"] if venue == "bitget" else body["sz"]


def venue_qty(emu, venue, symbol, side=None) -> Decimal:
    return emu.position(symbol, account=KEY, venue=venue, side=side).size


def held(strategy, symbol) -> Decimal:
    row = Position.objects.filter(strategy=strategy, symbol=symbol).first()
    return row.qty if row else Decimal("0")


def test_every_action_on_the_perpetual(emu, venue, strategy, send):
    bought = run(send, action="buy", volume=0.01, price=65000)
    assert bought.status == Signal.Status.EXECUTED, bought.reason
    order = Order.objects.get(signal=bought)
    assert (order.status, order.filled_qty, order.avg_price) == (Order.Status.FILLED, Decimal("0.01"), 65000)
    assert Fill.objects.get(order=order).qty == Decimal("0.01")
    [body] = sent(emu, venue)
    # Our client id reaches the venue as its own field, valid under its rules.
    assert body["clientOid" if venue == "bitget" else "clOrdId"] == order.client_order_id
    assert client_order_id_problem(venue, order.client_order_id) == ""
    # 0.01 BTC is 0.01 on Bitget and 1 contract of 0.01 BTC on OKX.
    assert size_of(body, venue) == ("0.01" if venue == "bitget" else "1")
    assert venue_qty(emu, venue, BTC) == Decimal("0.01")
    assert bought.sent_at and bought.acked_at and bought.filled_at

    short = run(send, action="sell", ticker="ETHUSDT.P", volume=0.5, price=3000)
    assert short.status == Signal.Status.EXECUTED, short.reason
    assert venue_qty(emu, venue, ETH) == Decimal("-0.5") and held(strategy, ETH) == Decimal("-0.5")

    skipped = run(send, action="close_long", ticker="ETHUSDT.P", price=3000)
    assert skipped.status == Signal.Status.SKIPPED and "no long position" in skipped.reason

    closed = run(send, action="close_short", ticker="ETHUSDT.P", price=3000)
    assert closed.status == Signal.Status.EXECUTED, closed.reason
    close_body = sent(emu, venue)[-1]
    # What "close" sends in one-way mode: a reduce-only buy of the whole short.
    if venue == "bitget":
        assert (close_body["side"], close_body["reduceOnly"], close_body["size"]) == ("buy", "YES", "0.5")
    else:
        assert (close_body["side"], close_body["reduceOnly"], close_body["sz"]) == ("buy", True, "5")
    assert venue_qty(emu, venue, ETH) == 0

    flat = run(send, action="close_all", price=65000)
    assert flat.status == Signal.Status.EXECUTED, flat.reason
    assert venue_qty(emu, venue, BTC) == 0
    assert not Position.objects.filter(strategy=strategy).exclude(qty=0).exists()
    assert len(creates(emu, venue)) == 4


def test_a_reversal_in_one_way_mode_closes_then_opens(emu, venue, strategy, send):
    assert run(send, action="buy", volume=0.01).status == Signal.Status.EXECUTED
    reversed_ = run(send, action="sell", volume=0.02)
    assert reversed_.status == Signal.Status.EXECUTED, reversed_.reason
    close, entry = Order.objects.filter(signal=reversed_).order_by("leg")
    assert (close.side, close.reduce_only, close.requested_qty) == ("sell", True, Decimal("0.01"))
    assert (entry.side, entry.reduce_only, entry.requested_qty) == ("sell", False, Decimal("0.02"))
    _, close_body, entry_body = sent(emu, venue)
    assert close_body["reduceOnly"] in ("YES", True) and "reduceOnly" not in entry_body
    assert venue_qty(emu, venue, BTC) == Decimal("-0.02") and held(strategy, BTC) == Decimal("-0.02")


def test_a_reversal_in_hedge_mode_closes_the_long_and_opens_the_short(emu, venue, strategy, send):
    account = strategy.account
    account.position_mode = ExchangeAccount.PositionMode.HEDGE
    account.full_clean()
    account.save()
    emu.set_position_mode("hedge", venue=venue)
    assert account_test_connection(account=account)["ok"]

    assert run(send, action="buy", volume=0.01).status == Signal.Status.EXECUTED
    reversed_ = run(send, action="sell", volume=0.02)
    assert reversed_.status == Signal.Status.EXECUTED, reversed_.reason
    bodies = sent(emu, venue)
    if venue == "bitget":
        # "side" names the position: open long, close long (buy + Close), open short.
        assert [(b["side"], b["tradeSide"]) for b in bodies] == [("buy", "Open"), ("buy", "Close"), ("sell", "Open")]
    else:
        assert [(b["side"], b["posSide"]) for b in bodies] == [("buy", "long"), ("sell", "long"), ("sell", "short")]
    assert venue_qty(emu, venue, BTC, side="long") == 0
    assert venue_qty(emu, venue, BTC, side="short") == Decimal("-0.02")
    assert held(strategy, BTC) == Decimal("-0.02")

    closed = run(send, action="close_short")
    assert closed.status == Signal.Status.EXECUTED, closed.reason
    last = sent(emu, venue)[-1]
    assert (last["side"], last.get("tradeSide") or last.get("posSide")) == (
        ("sell", "Close") if venue == "bitget" else ("buy", "short")
    )
    assert venue_qty(emu, venue, BTC, side="short") == 0 and held(strategy, BTC) == 0


def test_spot_buy_close_and_no_short(emu, venue, send):
    emu.set_price("BTCUSDT", "65000")
    strategy = StrategyFactory(strategy_id="demo", account=make_account(emu, exchange=venue, market_type="spot"))
    bought = run(send, action="buy", ticker="BTCUSDT", volume=0.002, price=65000)
    assert bought.status == Signal.Status.EXECUTED, bought.reason
    order = Order.objects.get(signal=bought)
    assert order.symbol == "BTC/USDT" and order.filled_qty == Decimal("0.002")
    body = sent(emu, venue)[0]
    if venue == "bitget":
        assert body["size"] == "130"  # a Bitget spot market buy spends USDT: 0.002 x 65000
    else:
        assert (body["tdMode"], body["tgtCcy"], body["sz"]) == ("cash", "base_ccy", "0.002")
    held_base = emu.balance("BTC", account=KEY, venue=venue)
    assert held_base == Decimal("0.002") * Decimal("0.999")  # the fee is taken in BTC
    assert held(strategy, "BTC/USDT") == held_base

    closed = run(send, action="close_long", ticker="BTCUSDT", price=65000)
    assert closed.status == Signal.Status.EXECUTED, closed.reason
    sell = Order.objects.get(signal=closed)
    assert sell.side == "sell" and not sell.reduce_only  # spot has no reduce-only flag
    assert "reduceOnly" not in sent(emu, venue)[-1]
    short = run(send, action="sell", ticker="BTCUSDT", volume=0.002)
    assert short.status == Signal.Status.SKIPPED and "spot" in short.reason

    again = run(send, action="buy", ticker="BTCUSDT", volume=0.001, price=65000)
    assert again.status == Signal.Status.EXECUTED, again.reason
    flat = run(send, action="close_all", ticker="BTCUSDT", price=65000)
    assert flat.status == Signal.Status.EXECUTED, flat.reason
    assert len(creates(emu, venue)) == 4


@pytest.mark.parametrize(
    ("mode", "value", "volume", "bitget", "okx"),
    [
        ("signal", None, "0.0157", "0.015", "0.0157"),  # rounded down to the lot: 0.001 / 0.0001 BTC
        ("fixed_base", "0.00123", "1", "0.001", "0.0012"),
        ("fixed_quote", "100", "1", "0.001", "0.0015"),  # 100 USDT / 65000
        ("percent_equity", "1", "1", "0.015", "0.0153"),  # 1% of ~100000 USDT / 65000
    ],
)
def test_sizing_modes_round_down_to_the_venues_lot(emu, venue, strategy, send, mode, value, volume, bitget, okx):
    strategy.sizing_mode = mode
    strategy.size_value = Decimal(value) if value else None
    strategy.save()
    signal = run(send, action="buy", volume=float(volume), price=65000)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    expected = Decimal(bitget if venue == "bitget" else okx)
    order = Order.objects.get(signal=signal)
    assert order.requested_qty == order.filled_qty == expected
    contracts = expected if venue == "bitget" else expected / Decimal("0.01")
    assert Decimal(size_of(sent(emu, venue)[0], venue)) == contracts
    assert venue_qty(emu, venue, BTC) == expected


def test_sizes_below_the_venues_minimum_are_refused_before_anything_is_sent(emu, venue, strategy, send):
    strategy.sizing_mode = "fixed_base"
    strategy.size_value = Decimal("0.00009")  # below both minimums (0.001 / 0.0001 BTC)
    strategy.save()
    signal = run(send, action="buy", price=65000)
    assert signal.status == Signal.Status.FAILED
    assert "below the market minimum" in signal.reason
    if venue == "bitget":
        # Bitget also has a 5 USDT minimum value: 20 DOGE at 0.15 is 3 USDT.
        emu.set_price("DOGEUSDT", "0.15")
        strategy.size_value = Decimal("20")
        strategy.save()
        cheap = run(send, action="buy", ticker="DOGEUSDT.P", price=0.15)
        assert cheap.status == Signal.Status.FAILED and "below the market minimum 5 USDT" in cheap.reason
    assert creates(emu, venue) == []


def test_contract_sizes_convert_both_ways(emu, venue, strategy, send):
    """OKX's DOGE swap is 1000 DOGE a contract in lots of 0.01: 2500 DOGE travel as 2.5
    contracts and come back (fills, position, reconcile) as 2500 DOGE."""
    emu.set_price("DOGEUSDT", "0.15")
    bought = run(send, action="buy", ticker="DOGEUSDT.P", volume=2537, price=0.15)
    assert bought.status == Signal.Status.EXECUTED, bought.reason
    order = Order.objects.get(signal=bought)
    # Rounded down to the lot in DOGE: 10 on OKX (0.01 x 1000), 1 on Bitget.
    expected = Decimal("2530") if venue == "okx" else Decimal("2537")
    assert order.requested_qty == order.filled_qty == expected
    assert size_of(sent(emu, venue)[0], venue) == ("2.53" if venue == "okx" else "2537")
    assert venue_qty(emu, venue, DOGE) == expected == held(strategy, DOGE)
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "in sync" in out.getvalue(), out.getvalue()

    closed = run(send, action="close_long", ticker="DOGEUSDT.P", price=0.15)
    assert closed.status == Signal.Status.EXECUTED, closed.reason
    assert size_of(sent(emu, venue)[-1], venue) == ("2.53" if venue == "okx" else "2537")
    assert venue_qty(emu, venue, DOGE) == 0 and held(strategy, DOGE) == 0


def test_a_close_the_venue_refuses_for_lack_of_a_position_is_rejected_once(emu, venue, strategy, send):
    assert run(send, action="buy", volume=0.01).status == Signal.Status.EXECUTED
    emu.set_position("BTCUSDT", 0, account=KEY, venue=venue)  # closed outside tvtrader
    signal = run(send, action="close_long")
    assert signal.status == Signal.Status.FAILED
    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.REJECTED and order.submit_count == 1
    assert "no position" in order.reason
    assert len(creates(emu, venue, client_order_id=order.client_order_id)) == 1  # never resent


def test_insufficient_funds_fails_once_with_the_venues_reason(emu, venue, strategy, send):
    emu.set_balance(10, venue=venue)
    signal = run(send, action="buy", volume=0.01)
    assert signal.status == Signal.Status.FAILED
    assert "insufficient funds" in signal.reason.lower()
    assert len(creates(emu, venue)) == 1


def test_leverage_and_isolated_margin_reach_the_venue_before_the_order(emu, venue, strategy, send):
    account = strategy.account
    account.margin_mode = ExchangeAccount.MarginMode.ISOLATED
    account.position_mode = ExchangeAccount.PositionMode.HEDGE
    account.full_clean()
    account.save()
    emu.set_position_mode("hedge", venue=venue)
    strategy.leverage = 5
    strategy.save()
    signal = run(send, action="buy", volume=0.01)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    operations = [r.operation for r in emu.requests(venue=venue) if r.operation in ("set_leverage", "create_order")]
    assert operations == ["set_leverage", "set_leverage", "create_order"]  # one per side when isolated
    levers = [r.params for r in emu.requests(venue=venue, operation="set_leverage")]
    if venue == "bitget":
        assert [(p["leverage"], p["holdSide"]) for p in levers] == [("5", "long"), ("5", "short")]
        assert sent(emu, venue)[0]["marginMode"] == "isolated"
    else:
        assert [(p["lever"], p["mgnMode"], p["posSide"]) for p in levers] == [
            (5, "isolated", "long"),
            (5, "isolated", "short"),
        ]
        assert sent(emu, venue)[0]["tdMode"] == "isolated"


def test_reconcile_finds_drift_and_fixes_it(emu, venue, strategy, send):
    assert run(send, action="buy", volume=0.01).status == Signal.Status.EXECUTED
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "in sync" in out.getvalue(), out.getvalue()

    emu.set_position("BTCUSDT", "0.03", "65000", account=KEY, venue=venue)  # changed at the venue
    out = StringIO()
    with pytest.raises(SystemExit) as exited:  # unresolved drift fails the command (cron alerts on it)
        call_command("reconcile", stdout=out, stderr=StringIO())
    assert exited.value.code == 1
    assert "drift (adopt with --fix)" in out.getvalue() and "0.03" in out.getvalue()
    assert Position.objects.get(account=strategy.account, strategy=None, symbol=BTC).qty == Decimal("0.01")

    out = StringIO()
    call_command("reconcile", "--fix", stdout=out)
    assert "adopted the exchange's quantity" in out.getvalue()
    assert Position.objects.get(account=strategy.account, strategy=None, symbol=BTC).qty == Decimal("0.03")
    out = StringIO()
    call_command("reconcile", stdout=out)
    assert "in sync" in out.getvalue(), out.getvalue()


def test_reconcile_nets_the_two_books_of_a_hedge_mode_account(emu, venue, strategy, send):
    account = strategy.account
    account.position_mode = ExchangeAccount.PositionMode.HEDGE
    account.save()
    emu.set_position_mode("hedge", venue=venue)
    assert run(send, action="buy", volume=0.01).status == Signal.Status.EXECUTED
    emu.set_position("BTCUSDT", "-0.004", "65000", account=KEY, venue=venue, side="short")  # opened elsewhere
    out = StringIO()
    call_command("reconcile", "--fix", stdout=out)
    assert Position.objects.get(account=account, strategy=None, symbol=BTC).qty == Decimal("0.006")


def test_test_connection_explains_what_the_venue_account_must_change(emu, venue, strategy, admin_client):
    account = strategy.account
    assert account_test_connection(account=account) == {"ok": True, "detail": "connected; equity 100000"}

    emu.set_position_mode("hedge", venue=venue)
    result = account_test_connection(account=account)
    assert result["ok"] is False and "equity 100000" in result["detail"]
    [problem] = result["problems"]
    assert "position mode" in problem and "set to one-way" in problem

    if venue == "okx":
        emu.set_position_mode("one_way", venue=venue)
        emu.set_account_config(venue="okx", acct_lv="1")
        [problem] = account_test_connection(account=account)["problems"]
        assert "Spot mode (acctLv 1)" in problem
    else:
        emu.set_position_mode("one_way", venue=venue)
        emu.set_account_config(venue="bitget", asset_mode="union")
        account.margin_mode = ExchangeAccount.MarginMode.ISOLATED
        account.save()
        [problem] = account_test_connection(account=account)["problems"]
        assert "multi-assets mode" in problem

    # The admin's "Test connection" says it in words.
    response = admin_client.post(
        reverse("admin:execution_exchangeaccount_test_connection", args=[account.pk]), follow=True
    )
    text = response.content.decode()
    assert "connection FAILED" in text and ("acctLv 1" in text or "multi-assets mode" in text)


# --- faults, through a real worker --------------------------------------------------------------


def test_an_ambiguous_create_is_resolved_by_client_id_and_never_resent(emu, venue, strategy, fast_worker, send):
    emu.add_fault("timeout_after_booking", "create_order", ms=3000, count=1, venue=venue)
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 1 and order.lookup_count >= 1
    assert order.filled_qty == Decimal("0.01")
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1
    assert len(creates(emu, venue)) == 1


def test_a_rate_limit_reply_places_the_order_exactly_once(emu, venue, strategy, fast_worker, send):
    # Bitget answers HTTP 429 / code 429; OKX HTTP 429 / code 50011: a clear refusal before
    # booking, so the long "not found" grace of these reuse-tolerant venues does not apply — one
    # lookup (and the resend's own last look) confirms it, and the same client id goes again.
    emu.add_fault("ret_code", "create_order", code=429 if venue == "bitget" else 50011, count=1, venue=venue)
    signal_id = send(action="buy", volume=0.01)
    # Sweeping as Celery beat would, in case the first run left it for later.
    wait_for(
        lambda: (signals_sweep(older_than_seconds=0), Signal.objects.get(pk=signal_id).is_terminal)[1],
        timeout=30,
        interval=1,
        message="the resend after the rate-limit refusal",
    )
    signal = finished(signal_id)
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.submit_count == 2
    assert [r.status for r in creates(emu, venue)] == [429, 200]
    assert len(emu.orders(client_order_id=order.client_order_id)) == 1


def test_a_buy_through_a_real_worker_records_the_whole_latency_chain(emu, venue, strategy, fast_worker, send):
    signal = finished(send(action="buy", volume=0.01))
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    assert signal.received_at <= signal.started_at <= signal.sent_at <= signal.acked_at <= signal.filled_at
    assert venue_qty(emu, venue, BTC) == Decimal("0.01")
