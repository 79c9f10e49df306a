"""Real ccxt.bitget against the emulator: classic-account API v2, USDT-M futures and spot,
signed with key, secret and passphrase."""

from __future__ import annotations

import json

import ccxt
import pytest

from .conftest import KEY

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def _bodies(emu, path: str) -> list[dict]:
    return [r.params for r in emu.requests(path)]


def test_load_markets_asks_each_product_type_once_and_reads_the_filters(emu, make_bitget):
    ex = make_bitget()
    paths = [(r.path, r.params.get("productType")) for r in emu.requests()]
    assert paths == [
        ("/api/v2/mix/market/contracts", p)
        for p in ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES", "SUSDT-FUTURES", "SCOIN-FUTURES", "SUSDC-FUTURES")
    ]
    btc = ex.market(BTC)
    assert btc["id"] == "BTCUSDT" and btc["swap"] and btc["linear"] and btc["contractSize"] == 1
    assert (btc["precision"]["amount"], btc["precision"]["price"]) == (0.001, 0.1)
    assert btc["limits"]["amount"]["min"] == 0.001 and btc["limits"]["cost"]["min"] == 5
    assert ex.market("BCH/USDT:USDT")["precision"]["price"] == 0.05  # pricePlace 2, priceEndStep 5


def test_a_wrong_secret_passphrase_or_clock_is_refused_before_anything_is_booked(emu, make_bitget):
    with pytest.raises(ccxt.AuthenticationError, match="40009"):
        make_bitget(secret="wrong").create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "a1"})
    with pytest.raises(ccxt.AuthenticationError, match="40012"):
        make_bitget(password="wrong").create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "a2"})
    ex = make_bitget()
    emu.set_clock_offset(60_000)
    with pytest.raises(ccxt.InvalidNonce, match="40008"):
        ex.fetch_balance()
    assert emu.orders() == []


def test_one_way_buy_is_found_by_client_id_and_closed_reduce_only(emu, make_bitget):
    ex = make_bitget()
    order = ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "bg1"})
    [sent] = _bodies(emu, "place-order")
    assert sent["clientOid"] == "bg1" and sent["marginMode"] == "crossed" and "tradeSide" not in sent
    assert order["id"] and order["status"] is None  # the create answer carries ids only
    found = ex.fetch_order("", BTC, {"clientOrderId": "bg1"})
    assert (found["status"], found["filled"], found["average"]) == ("closed", 0.01, 65000)
    assert found["fee"] == {"cost": pytest.approx(0.39), "currency": "USDT"}  # 0.06% taker
    [pos] = ex.fetch_positions()
    assert (pos["side"], pos["contracts"], pos["entryPrice"], pos["hedged"]) == ("long", 0.01, 65000, False)

    ex.create_order(BTC, "market", "sell", 0.01, None, {"clientOrderId": "bg2", "reduceOnly": True})
    assert _bodies(emu, "place-order")[-1]["reduceOnly"] == "YES"
    assert ex.fetch_positions() == []
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(100000 - 2 * 0.39)


def test_reduce_only_with_nothing_to_close_is_refused_with_22002(emu, make_bitget):
    ex = make_bitget()
    with pytest.raises(ccxt.ExchangeError, match="22002"):
        ex.create_order(BTC, "market", "sell", 0.01, None, {"clientOrderId": "ro", "reduceOnly": True})
    assert emu.orders() == []


def test_a_client_id_is_refused_only_while_its_order_is_unfilled(emu, make_bitget):
    ex = make_bitget()
    ex.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.ExchangeError, match="40786"):
        ex.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "dup"})
    ex.cancel_order(None, ETH, {"clientOrderId": "dup"})
    assert _bodies(emu, "cancel-order")[-1]["clientOid"] == "dup"
    with pytest.raises(ccxt.OrderNotFound, match="40768"):
        ex.cancel_order(None, ETH, {"clientOrderId": "dup"})
    ex.create_order(ETH, "market", "buy", 0.1, None, {"clientOrderId": "dup"})  # accepted again
    assert len(emu.orders(client_order_id="dup")) == 2
    assert ex.fetch_order("", ETH, {"clientOrderId": "dup"})["status"] == "closed"  # the latest


def test_unknown_orders_and_malformed_client_ids(emu, make_bitget):
    ex = make_bitget()
    with pytest.raises(ccxt.OrderNotFound, match="40109"):
        ex.fetch_order("", BTC, {"clientOrderId": "never"})
    with pytest.raises(ccxt.BadRequest, match="40305"):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "x" * 51})
    assert emu.orders() == []


def test_hedge_mode_keeps_long_and_short_apart_and_closes_each(emu, make_bitget):
    ex = make_bitget()
    ex.set_position_mode(True, BTC)
    assert emu.requests("set-position-mode")[0].params["posMode"] == "hedge_mode"
    with pytest.raises(ccxt.InvalidOrder, match="40774"):  # a one-way order on a hedge account
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "h0"})
    ex.create_order(BTC, "market", "buy", 0.02, None, {"clientOrderId": "h1", "hedged": True})
    ex.create_order(BTC, "market", "sell", 0.01, None, {"clientOrderId": "h2", "hedged": True})
    held = {p["side"]: p["contracts"] for p in ex.fetch_positions()}
    assert held == {"long": 0.02, "short": 0.01}
    assert [p["hedged"] for p in ex.fetch_positions()] == [True, True]
    # ccxt closes a long with side=buy + tradeSide=Close: on Bitget "side" names the position.
    ex.create_order(BTC, "market", "sell", 0.02, None, {"clientOrderId": "h3", "hedged": True, "reduceOnly": True})
    body = _bodies(emu, "place-order")[-1]
    assert (body["side"], body["tradeSide"]) == ("buy", "Close")
    closing = ex.fetch_order("", BTC, {"clientOrderId": "h3"})
    assert (closing["side"], closing["reduceOnly"], closing["status"]) == ("sell", True, "closed")
    assert {p["side"]: p["contracts"] for p in ex.fetch_positions()} == {"short": 0.01}
    with pytest.raises(ccxt.ExchangeError, match="40757"):  # more than the short holds
        ex.create_order(BTC, "market", "buy", 0.02, None, {"clientOrderId": "h4", "hedged": True, "reduceOnly": True})
    with pytest.raises(ccxt.ExchangeError, match="40920"):  # no switching back while a position is open
        ex.set_position_mode(False, BTC)
    account = ex.privateMixGetV2MixAccountAccount(
        {"symbol": "BTCUSDT", "productType": "USDT-FUTURES", "marginCoin": "USDT"}
    )
    assert account["data"]["posMode"] == "hedge_mode"


def test_set_leverage_and_its_limit(emu, make_bitget):
    ex = make_bitget()
    ex.set_leverage(5, BTC)
    ex.set_leverage(5, BTC)  # unchanged is no error on Bitget
    assert emu.requests("set-leverage")[0].params == {
        "symbol": "BTCUSDT",
        "leverage": "5",
        "marginCoin": "USDT",
        "productType": "USDT-FUTURES",
    }
    with pytest.raises(ccxt.ExchangeError, match="40797"):
        ex.set_leverage(101, BTC)


def test_spot_market_buy_spends_quote_and_fills_base(emu, make_bitget):
    ex = make_bitget(spot=True)
    assert [r.path for r in emu.requests()] == ["/api/v2/spot/public/symbols", "/api/v2/margin/currencies"]
    btc = ex.market("BTC/USDT")
    assert btc["precision"]["amount"] == 0.000001 and btc["limits"]["cost"]["min"] == 1
    # ccxt turns amount x price into the quote amount a market buy spends.
    ex.create_order("BTC/USDT", "market", "buy", 0.002, 65000, {"clientOrderId": "s1"})
    assert _bodies(emu, "place-order")[0]["size"] == "130"
    found = ex.fetch_order("", "BTC/USDT", {"clientOrderId": "s1"})
    assert (found["status"], found["filled"], found["amount"]) == ("closed", 0.002, 0.002)
    assert found["fee"]["currency"] == "BTC"
    assert ex.fetch_balance()["BTC"]["free"] == pytest.approx(0.002 * 0.999)
    ex.create_order("BTC/USDT", "limit", "sell", 0.001, 70000, {"clientOrderId": "s2"})
    assert [o["clientOrderId"] for o in ex.fetch_open_orders("BTC/USDT")] == ["s2"]
    ex.cancel_order(None, "BTC/USDT", {"clientOrderId": "s2"})
    with pytest.raises(ccxt.OrderNotFound):  # an unknown spot order is an empty list
        ex.fetch_order("", "BTC/USDT", {"clientOrderId": "never"})
    with pytest.raises(ccxt.InsufficientFunds, match="43012"):
        ex.create_order("BTC/USDT", "market", "sell", 1, None, {"clientOrderId": "s3"})


def test_venue_error_codes_and_rate_limit_map_as_in_production(emu, make_bitget):
    ex = make_bitget()
    emu.add_fault("ret_code", "create_order", code=40762)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "f1"})
    emu.set_rate_limit(1, venue="bitget")
    ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "f2"})
    with pytest.raises(ccxt.DDoSProtection):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "f3"})
    assert emu.requests(client_order_id="f3")[0].status == 429
    assert [o.client_order_id for o in emu.orders()] == ["f2"]
    assert emu.rate_limit_violations(account=KEY, venue="bitget")


def test_timeout_after_booking_is_found_by_client_id(emu, make_bitget):
    ex = make_bitget(timeout=400)
    emu.add_fault("timeout_after_booking", "create_order", ms=1200)
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "t1"})
    assert ex.fetch_order("", BTC, {"clientOrderId": "t1"})["status"] == "closed"
    assert len(emu.orders(client_order_id="t1")) == 1


def test_spot_fee_detail_is_what_ccxt_parses(emu, make_bitget):
    ex = make_bitget(spot=True)
    ex.create_order("ETH/USDT", "market", "buy", 0.1, 3400, {"clientOrderId": "x1"})
    raw = ex.privateSpotGetV2SpotTradeOrderInfo({"clientOid": "x1"})["data"][0]
    detail = json.loads(raw["feeDetail"])
    assert detail["ETH"]["feeCoinCode"] == "ETH"
