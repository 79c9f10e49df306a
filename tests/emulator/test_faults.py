"""Each fault kind, seen through real ccxt: the exception the reference table
predicts, and what did or did not happen on the exchange side."""

from __future__ import annotations

import threading
import time

import ccxt
import pytest

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def _linear_buy(ex, cid: str, amount: float = 0.01):
    return ex.create_order(BTC, "market", "buy", amount, None, {"clientOrderId": cid})


def test_timeout_after_booking_books_exactly_once(emu, make_bybit):
    ex = make_bybit(timeout=400)
    emu.add_fault("timeout_after_booking", "order/create", ms=1200)
    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        _linear_buy(ex, "tmo-1")
    assert time.monotonic() - started < 1.0  # the client gave up, not the server
    assert len(emu.orders(client_order_id="tmo-1")) == 1
    # Reconciliation by orderLinkId finds the booked, filled order ...
    [found] = ex.fetch_open_orders(BTC, None, None, {"orderLinkId": "tmo-1"})
    assert found["status"] == "closed" and found["filled"] == 0.01
    # ... and a blind re-send is refused, so the order still exists once.
    with pytest.raises(ccxt.InvalidOrder, match="110072"):
        _linear_buy(ex, "tmo-1")
    assert len(emu.orders(client_order_id="tmo-1")) == 1
    record = emu.requests("order/create")[0]
    assert record.booked and record.outcome == "booked+fault:timeout_after_booking"


def test_timeout_after_booking_close_variant(emu, bybit):
    emu.add_fault("timeout_after_booking", "create_order", close=True)
    with pytest.raises(ccxt.NetworkError) as info:
        _linear_buy(bybit, "tmo-2")
    assert not isinstance(info.value, ccxt.ExchangeNotAvailable)
    assert len(emu.orders(client_order_id="tmo-2")) == 1


@pytest.mark.parametrize("body", ["empty", "html"])
@pytest.mark.parametrize("status", [502, 503])
def test_5xx_before_booking(emu, bybit, status, body):
    emu.add_fault("http_5xx_before_booking", "order/create", status=status, body=body)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        _linear_buy(bybit, "5xx-b")
    assert emu.orders() == []
    assert emu.requests("order/create")[0].status == status
    _linear_buy(bybit, "5xx-b")  # count=1: the next one goes through
    assert len(emu.orders()) == 1


def test_5xx_after_booking(emu, bybit):
    emu.add_fault("http_5xx_after_booking", "order/create", status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        _linear_buy(bybit, "5xx-a")
    [order] = emu.orders(client_order_id="5xx-a")
    assert order.status == "Filled"
    assert bybit.fetch_position(BTC)["contracts"] == 0.01


@pytest.mark.parametrize(
    ("code", "exc", "not_exc"),
    [
        (10006, ccxt.RateLimitExceeded, None),
        (110007, ccxt.InsufficientFunds, None),
        (110094, ccxt.InvalidOrder, None),
        (10016, ccxt.ExchangeError, ccxt.NetworkError),
    ],
)
def test_bybit_ret_code(emu, bybit, code, exc, not_exc):
    emu.add_fault("ret_code", "order/create", code=code)
    with pytest.raises(exc, match=str(code)) as info:
        _linear_buy(bybit, "rc")
    if not_exc is not None:
        assert not isinstance(info.value, not_exc)
    assert emu.orders() == []


@pytest.mark.parametrize("status", [429, 403])
def test_bybit_http_status_is_rate_limit(emu, bybit, status):
    emu.add_fault("http_status", "order/create", status=status)
    with pytest.raises(ccxt.RateLimitExceeded):
        _linear_buy(bybit, "hs")
    assert emu.orders() == []


def test_partial_fill_then_fill_rest(emu, bybit):
    emu.add_fault("partial_fill", "order/create", fraction=0.3)
    _linear_buy(bybit, "pf-1")
    [order] = bybit.fetch_open_orders(BTC, None, None, {"orderLinkId": "pf-1"})
    assert order["status"] == "open"
    assert order["filled"] == 0.003
    assert order["remaining"] == pytest.approx(0.007)
    assert bybit.fetch_position(BTC)["contracts"] == 0.003
    assert bybit.fetch_open_orders(BTC)[0]["clientOrderId"] == "pf-1"

    [rest] = emu.fill_rest(client_order_id="pf-1")
    assert rest.status == "Filled"
    [order] = bybit.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "pf-1"})
    assert order["status"] == "closed" and order["filled"] == 0.01
    assert bybit.fetch_position(BTC)["contracts"] == 0.01
    trades = bybit.fetch_order_trades(None, BTC, None, None, {"clientOrderId": "pf-1"})
    assert sorted(t["amount"] for t in trades) == [0.003, 0.007]


def test_partial_fill_completes_after_n_lookups(emu, bybit):
    emu.add_fault("partial_fill", "order/create", fraction=0.5, fill_after_lookups=2)
    _linear_buy(bybit, "pf-2")
    seen = [bybit.fetch_open_orders(BTC, None, None, {"orderLinkId": "pf-2"})[0]["filled"] for _ in range(3)]
    assert seen == [0.005, 0.005, 0.01]


def test_partial_fill_can_be_cancelled(emu, bybit):
    emu.add_fault("partial_fill", "order/create", fraction=0.5)
    _linear_buy(bybit, "pf-3")
    bybit.cancel_order(None, BTC, {"orderLinkId": "pf-3"})
    [order] = bybit.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "pf-3"})
    assert order["status"] == "canceled" and order["filled"] == 0.005
    assert str(emu.fill_rest(client_order_id="pf-3")[0].cum_qty) == "0.005"


def test_invisible_for_ms(emu, bybit):
    emu.add_fault("invisible_for_ms", "order/create", ms=400)
    created = _linear_buy(bybit, "inv-1")
    assert created["id"]
    assert bybit.fetch_open_orders(BTC, None, None, {"orderLinkId": "inv-1"}) == []
    assert bybit.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "inv-1"}) == []
    with pytest.raises(ccxt.OrderNotFound):
        bybit.fetch_order(created["id"], BTC, {"acknowledged": True})
    assert len(emu.orders(client_order_id="inv-1")) == 1  # the ledger knows
    time.sleep(0.45)
    [order] = bybit.fetch_open_orders(BTC, None, None, {"orderLinkId": "inv-1"})
    assert order["id"] == created["id"] and order["status"] == "closed"


@pytest.mark.parametrize(("when", "booked"), [("before", 0), ("after", 1)])
def test_drop_connection(emu, bybit, when, booked):
    emu.add_fault("drop_connection", "order/create", when=when)
    with pytest.raises(ccxt.NetworkError):
        _linear_buy(bybit, "drop")
    assert len(emu.orders(client_order_id="drop")) == booked
    record = emu.requests("order/create")[0]
    assert record.status is None and "drop_connection" in record.outcome
    bybit.fetch_balance()  # the client recovers on a new connection


def test_slow_request_does_not_delay_a_concurrent_fast_one(emu, make_bybit):
    slow_ex, fast_ex = make_bybit(), make_bybit()
    emu.add_fault("latency_ms", "order/create", ms=800, symbol=BTC)
    results = {}

    def slow():
        t = time.monotonic()
        _linear_buy(slow_ex, "slow")
        results["slow"] = time.monotonic() - t

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)  # the slow request is now being held by the emulator
    t = time.monotonic()
    fast_ex.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "fast"})
    results["fast"] = time.monotonic() - t
    thread.join()
    assert results["slow"] >= 0.8
    # Generous bound for a loaded CI box; blocked, it would take >= 0.7 s.
    assert results["fast"] < 0.5
    slow_rec = emu.requests(client_order_id="slow")[0]
    fast_rec = emu.requests(client_order_id="fast")[0]
    # The fast one arrived after the slow one and was answered before it.
    assert slow_rec.recv_mono < fast_rec.recv_mono
    assert fast_rec.done_mono < slow_rec.done_mono


def test_rule_matching_and_count(emu, bybit):
    emu.add_fault("ret_code", "order/create", code=10006, count=2, symbol=ETH)
    emu.add_fault("ret_code", "create_order", code=110007, client_order_id="unlucky", count=None)
    _linear_buy(bybit, "btc-ok")  # other symbol: unaffected
    for _ in range(2):
        with pytest.raises(ccxt.RateLimitExceeded):
            bybit.create_order(ETH, "market", "buy", 0.1, None)
    bybit.create_order(ETH, "market", "buy", 0.1, None)  # count exhausted
    for _ in range(3):  # count=None: always
        with pytest.raises(ccxt.InsufficientFunds):
            _linear_buy(bybit, "unlucky")
    assert [r.action for r in emu.faults()] == ["ret_code"]
    emu.clear_faults()
    _linear_buy(bybit, "unlucky")
    assert len(emu.orders()) == 3


def test_rate_limit_setting(emu, bybit):
    emu.set_rate_limit(3)
    outcomes = []
    for i in range(5):
        try:
            bybit.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": f"rl-{i}"})
            outcomes.append("ok")
        except ccxt.RateLimitExceeded:
            outcomes.append("limited")
    assert outcomes == ["ok", "ok", "ok", "limited", "limited"]
    violations = emu.rate_limit_violations()
    assert len(violations) == 2 and violations[0]["limit"] == 3
    assert len(emu.orders()) == 3
    assert emu.requests("order/create")[-1].code == 10006
    time.sleep(1.05)  # the rolling window moves on
    bybit.create_order(ETH, "market", "buy", 0.1, None)
    assert len(emu.orders()) == 4


def test_ret_code_on_a_read_endpoint(emu, bybit):
    emu.add_fault(
        "ret_code",
        "positions",
        code=10016,
        msg="Request timeout, please try again later",
    )
    # ccxt's broad match on "Request timeout" turns 10016 into RequestTimeout.
    with pytest.raises(ccxt.RequestTimeout):
        bybit.fetch_positions([BTC])


@pytest.mark.parametrize("status", [504, 408])
def test_gateway_timeout_status_is_request_timeout(emu, bybit, status):
    emu.add_fault("http_status", "order/create", status=status)
    with pytest.raises(ccxt.RequestTimeout):
        _linear_buy(bybit, "gw")


def test_http_200_garbage_body_raises_nothing(emu, bybit):
    # Reference pitfall: ccxt returns an order without an id instead of raising.
    emu.add_fault("http_status", "order/create", status=200, body="<html>ok</html>")
    order = _linear_buy(bybit, "garbage")
    assert order["id"] is None
    assert emu.orders() == []
