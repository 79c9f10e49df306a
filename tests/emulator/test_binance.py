"""Real ccxt.binanceusdm against the emulator, through the transport redirect
(mode B), so Binance's URL-dependent error table is the production one."""

from __future__ import annotations

import time

import ccxt
import pytest

from .conftest import KEY

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def test_load_markets_one_request(emu, binance):
    assert len(binance.markets) >= 25
    btc = binance.market(BTC)
    assert btc["id"] == "BTCUSDT" and btc["linear"] and btc["swap"]
    assert btc["precision"]["amount"] == 0.001
    assert btc["precision"]["price"] == 0.1
    assert btc["limits"]["cost"]["min"] == 100
    assert [r.path for r in emu.requests()] == ["/fapi/v1/exchangeInfo"]


def test_fetch_time(emu, binance):
    assert abs(binance.fetch_time() - binance.milliseconds()) < 1000


def test_market_order_comes_back_filled_and_is_found_by_client_id(emu, binance):
    order = binance.create_order(BTC, "market", "buy", 0.002, None, {"clientOrderId": "b-1"})
    assert emu.requests("/fapi/v1/order")[0].params["newOrderRespType"] == "RESULT"
    assert order["status"] == "closed"
    assert order["filled"] == 0.002
    assert order["average"] == 65000
    assert order["clientOrderId"] == "b-1"

    fetched = binance.fetch_order(None, BTC, {"clientOrderId": "b-1"})
    assert fetched["id"] == order["id"] and fetched["status"] == "closed"
    assert emu.requests("/fapi/v1/order")[-1].params["origClientOrderId"] == "b-1"

    [position] = binance.fetch_positions([BTC])
    assert position["side"] == "long"
    assert position["contracts"] == 0.002
    assert position["entryPrice"] == 65000
    balance = binance.fetch_balance()["USDT"]
    assert balance["used"] == pytest.approx(13)  # 130 notional at 10x
    assert balance["total"] == pytest.approx(100000 - 130 * 0.0005)

    emu.set_price(BTC, 64000)
    assert binance.fetch_positions([BTC])[0]["unrealizedPnl"] == pytest.approx(-2)
    closing = binance.create_order(BTC, "market", "sell", 0.002, None, {"reduceOnly": True})
    assert closing["status"] == "closed" and closing["reduceOnly"] is True
    assert binance.fetch_positions() == []


def test_ccxt_generates_a_client_id_when_none_is_given(emu, binance):
    order = binance.create_order(ETH, "market", "buy", 0.1, None)
    assert order["clientOrderId"].startswith("x-")
    assert emu.orders()[0].client_order_id == order["clientOrderId"]


def test_limit_order_cancel_by_client_id(emu, binance):
    order = binance.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "b-2"})
    assert order["status"] == "open"
    assert [o["clientOrderId"] for o in binance.fetch_open_orders(ETH)] == ["b-2"]
    cancelled = binance.cancel_order(None, ETH, {"clientOrderId": "b-2"})
    assert cancelled["status"] == "canceled"
    assert binance.fetch_order(order["id"], ETH)["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):
        binance.cancel_order(None, ETH, {"clientOrderId": "b-2"})
    with pytest.raises(ccxt.OrderNotFound):
        binance.fetch_order("12345", ETH)


def test_duplicate_client_id_rejected_only_while_open(emu, binance):
    binance.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "b-dup"})
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        binance.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "b-dup"})
    binance.cancel_order(None, ETH, {"clientOrderId": "b-dup"})
    # Once the earlier order is final, Binance accepts the same id again.
    binance.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "b-dup"})
    binance.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "b-dup"})
    assert len(emu.orders(client_order_id="b-dup")) == 3


def test_reduce_only_insufficient_and_min_notional(emu, binance):
    with pytest.raises(ccxt.InvalidOrder, match="-2022"):
        binance.create_order(ETH, "market", "sell", 0.1, None, {"reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="-4164"):
        binance.create_order(BTC, "market", "buy", 0.001, None)  # 65 < 100
    emu.set_balance(10, venue="binance")
    with pytest.raises(ccxt.InsufficientFunds, match="-2019"):
        binance.create_order(ETH, "market", "buy", 1, None)
    assert emu.orders() == []


def test_set_leverage(emu, binance):
    assert binance.set_leverage(20, BTC)["leverage"] == 20
    binance.set_leverage(20, BTC)  # Binance does not complain when unchanged
    binance.create_order(BTC, "market", "buy", 0.002, None)
    assert binance.fetch_balance()["USDT"]["used"] == pytest.approx(6.5)


def test_wrong_secret_and_stale_timestamp(emu, make_binance):
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        make_binance(secret="wrong").create_order(ETH, "market", "buy", 0.1, None)
    with pytest.raises(ccxt.InvalidNonce, match="-1021"):
        make_binance(options={"timeDifference": 11_000}).fetch_balance()  # recvWindow 10 s
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        make_binance(key="nobody").fetch_balance()
    assert emu.orders() == []


def test_rate_limit_fault_and_setting_are_ddos_protection(emu, binance):
    emu.add_fault("ret_code", "create_order", code=-1003, venue="binance")
    with pytest.raises(ccxt.DDoSProtection):
        binance.create_order(ETH, "market", "buy", 0.1, None)
    assert emu.requests("/fapi/v1/order")[0].status == 429
    emu.set_rate_limit(1, account=KEY, venue="binance")
    binance.create_order(ETH, "market", "buy", 0.1, None)
    with pytest.raises(ccxt.DDoSProtection):
        binance.create_order(ETH, "market", "buy", 0.1, None)
    assert len(emu.rate_limit_violations(venue="binance")) == 1
    assert len(emu.orders()) == 1


def test_insufficient_margin_fault(emu, binance):
    emu.add_fault("ret_code", "/fapi/v1/order", method="POST", code=-2019)
    with pytest.raises(ccxt.InsufficientFunds):
        binance.create_order(ETH, "market", "buy", 0.1, None)


def test_timeout_after_booking_then_reconcile(emu, make_binance):
    ex = make_binance(timeout=400)
    emu.add_fault("timeout_after_booking", "create_order", ms=1200)
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "b-tmo"})
    assert len(emu.orders(client_order_id="b-tmo")) == 1
    assert ex.fetch_order(None, ETH, {"clientOrderId": "b-tmo"})["status"] == "closed"


def test_5xx_is_exchange_not_available(emu, binance):
    emu.add_fault("http_5xx_after_booking", "create_order", status=502)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        binance.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "b-5xx"})
    assert len(emu.orders(client_order_id="b-5xx")) == 1


def test_partial_fill_and_invisibility(emu, binance):
    emu.add_fault("partial_fill", "create_order", fraction=0.5)
    order = binance.create_order(ETH, "market", "buy", 1, None, {"clientOrderId": "b-pf"})
    assert order["status"] == "open" and order["filled"] == 0.5
    emu.fill_rest(client_order_id="b-pf")
    assert binance.fetch_order(order["id"], ETH)["filled"] == 1

    emu.add_fault("invisible_for_ms", "create_order", ms=300)
    hidden = binance.create_order(ETH, "market", "buy", 1, None, {"clientOrderId": "b-inv"})
    with pytest.raises(ccxt.OrderNotFound):
        binance.fetch_order(None, ETH, {"clientOrderId": "b-inv"})
    time.sleep(0.35)
    assert binance.fetch_order(None, ETH, {"clientOrderId": "b-inv"})["id"] == hidden["id"]


def test_url_override_loses_binance_error_mapping(emu):
    # Why mode B: with urls overridden, -2019 is a bare ExchangeError.
    ex = ccxt.binanceusdm({"apiKey": KEY, "secret": "test-secret", "has": {"fetchCurrencies": False}})
    for name, url in list(ex.urls["api"].items()):
        if "fapi" in name:
            ex.urls["api"][name] = url.replace("https://fapi.binance.com", emu.url)
    ex.load_markets()
    emu.set_balance(10, venue="binance")
    with pytest.raises(ccxt.ExchangeError) as info:
        ex.create_order(ETH, "market", "buy", 1, None)
    assert not isinstance(info.value, ccxt.InsufficientFunds)
