"""Real ccxt.okx against the emulator: API v5 swaps counted in contracts of ctVal, and spot,
signed with key, secret and passphrase."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from .conftest import KEY

BTC = "BTC/USDT:USDT"
DOGE = "DOGE/USDT:USDT"


def _sent(emu) -> list[dict]:
    return [r.params for r in emu.requests(operation="create_order")]


def test_load_markets_is_one_request_and_contracts_carry_ctval(emu, make_okx):
    ex = make_okx()
    assert [(r.path, r.params) for r in emu.requests()] == [("/api/v5/public/instruments", {"instType": "SWAP"})]
    btc = ex.market(BTC)
    assert btc["id"] == "BTC-USDT-SWAP" and btc["contractSize"] == 0.01
    assert (btc["precision"]["amount"], btc["limits"]["amount"]["min"]) == (0.01, 0.01)  # contracts
    assert ex.market(DOGE)["contractSize"] == 1000


def test_a_wrong_secret_passphrase_or_clock_is_refused(emu, make_okx):
    with pytest.raises(ccxt.AuthenticationError, match="50113"):
        make_okx(secret="wrong").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
        make_okx(password="wrong").fetch_balance()
    ex = make_okx()
    emu.set_clock_offset(-60_000)
    with pytest.raises(ccxt.InvalidNonce, match="50102"):
        ex.fetch_balance()
    assert {r.status for r in emu.requests("/account/balance")} == {401}


def test_sizes_travel_in_contracts_and_are_booked_in_base_coin(emu, make_okx):
    ex = make_okx()
    ex.create_order(BTC, "market", "buy", 1.5, None, {"clientOrderId": "ok1"})
    [sent] = _sent(emu)
    assert sent == {
        "instId": "BTC-USDT-SWAP",
        "side": "buy",
        "ordType": "market",
        "sz": "1.5",
        "tdMode": "cross",
        "clOrdId": "ok1",
    }
    assert emu.position(BTC, account=KEY, venue="okx").size == Decimal("0.015")  # 1.5 x 0.01 BTC
    found = ex.fetch_order(None, BTC, {"clientOrderId": "ok1"})
    assert (found["status"], found["filled"], found["amount"], found["average"]) == ("closed", 1.5, 1.5, 65000)
    assert found["fee"] == {"cost": pytest.approx(0.4875), "currency": "USDT"}  # 975 USDT x 0.05%
    [pos] = ex.fetch_positions()
    assert (pos["side"], pos["contracts"], pos["contractSize"], pos["hedged"]) == ("long", 1.5, 0.01, False)
    # ccxt truncates amounts to the lot itself; sent raw, an off-lot size is the venue's 51121.
    with pytest.raises(ccxt.InvalidOrder, match="51121"):
        ex.privatePostTradeOrder(
            {"instId": "BTC-USDT-SWAP", "tdMode": "cross", "side": "buy", "ordType": "market", "sz": "1.005"}
        )


def test_reduce_only_refusals_in_net_mode(emu, make_okx):
    ex = make_okx()
    with pytest.raises(ccxt.ExchangeError, match="51169"):
        ex.create_order(BTC, "market", "sell", 1, None, {"clientOrderId": "r1", "reduceOnly": True})
    ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "r2"})
    with pytest.raises(ccxt.ExchangeError, match="51170"):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "r3", "reduceOnly": True})
    ex.create_order(BTC, "market", "sell", 1, None, {"clientOrderId": "r4", "reduceOnly": True})
    assert ex.fetch_positions() == []
    assert [o.client_order_id for o in emu.orders()] == ["r2", "r4"]


def test_a_clordid_is_refused_only_while_its_order_is_pending(emu, make_okx):
    ex = make_okx()
    ex.create_order(BTC, "limit", "buy", 1, 60000, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="51016"):
        ex.create_order(BTC, "limit", "buy", 1, 60000, {"clientOrderId": "dup"})
    assert [o["clientOrderId"] for o in ex.fetch_open_orders()] == ["dup"]
    ex.cancel_order(None, BTC, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.OrderNotFound, match="51401"):
        ex.cancel_order(None, BTC, {"clientOrderId": "dup"})
    ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "dup"})
    assert ex.fetch_order(None, BTC, {"clientOrderId": "dup"})["status"] == "closed"  # the latest one
    with pytest.raises(ccxt.OrderNotFound, match="51603"):
        ex.fetch_order(None, BTC, {"clientOrderId": "never"})
    with pytest.raises(ccxt.BadRequest, match="51000"):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "not-alnum"})


def test_long_short_mode_names_the_position_on_every_order(emu, make_okx):
    ex = make_okx()
    ex.set_position_mode(True)
    assert ex.fetch_position_mode()["hedged"] is True
    with pytest.raises(ccxt.BadRequest, match="51000"):  # no posSide in long/short mode
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "h0"})
    ex.create_order(BTC, "market", "buy", 2, None, {"clientOrderId": "h1", "hedged": True})
    ex.create_order(BTC, "market", "sell", 1, None, {"clientOrderId": "h2", "hedged": True})
    assert {p["side"]: p["contracts"] for p in ex.fetch_positions()} == {"long": 2, "short": 1}
    ex.create_order(BTC, "market", "sell", 2, None, {"clientOrderId": "h3", "hedged": True, "reduceOnly": True})
    assert _sent(emu)[-1]["posSide"] == "long" and "reduceOnly" not in _sent(emu)[-1]
    assert {p["side"]: p["contracts"] for p in ex.fetch_positions()} == {"short": 1}
    with pytest.raises(ccxt.InvalidOrder, match="51112"):
        ex.create_order(BTC, "market", "buy", 2, None, {"clientOrderId": "h4", "hedged": True, "reduceOnly": True})
    with pytest.raises(ccxt.ExchangeError, match="59000"):
        ex.set_position_mode(False)


def test_an_account_in_spot_mode_cannot_trade_swaps(emu, make_okx):
    ex = make_okx()
    emu.set_account_config(venue="okx", acct_lv="1")
    assert ex.privateGetAccountConfig()["data"][0]["acctLv"] == "1"
    with pytest.raises(ccxt.AccountNotEnabled, match="51010"):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "lv1"})


def test_set_leverage_cross_and_isolated_per_side(emu, make_okx):
    ex = make_okx()
    ex.set_leverage(5, BTC)
    assert emu.requests("set-leverage")[0].params == {"lever": 5, "mgnMode": "cross", "instId": "BTC-USDT-SWAP"}
    ex.set_position_mode(True)
    with pytest.raises(ccxt.BadRequest):
        ex.set_leverage(5, BTC, {"marginMode": "isolated", "posSide": "net"})
    ex.set_leverage(5, BTC, {"marginMode": "isolated", "posSide": "long"})


def test_spot_market_buy_is_sized_in_base_and_the_batch_endpoint_works(emu, make_okx):
    ex = make_okx(spot=True, options={"createOrder": "privatePostTradeBatchOrders"})
    ex.create_order("BTC/USDT", "market", "buy", 0.002, None, {"clientOrderId": "sp1"})
    [batch] = emu.requests("batch-orders")
    assert batch.params["orders"][0]["tgtCcy"] == "base_ccy" and batch.client_order_id == "sp1"
    found = ex.fetch_order(None, "BTC/USDT", {"clientOrderId": "sp1"})
    assert (found["status"], found["filled"], found["fee"]["currency"]) == ("closed", 0.002, "BTC")
    assert ex.fetch_balance()["BTC"]["free"] == pytest.approx(0.002 * 0.999)
    with pytest.raises(ccxt.InsufficientFunds, match="51008"):
        ex.create_order("BTC/USDT", "market", "sell", 1, None, {"clientOrderId": "sp2"})


def test_venue_error_codes_and_rate_limit_map_as_in_production(emu, make_okx):
    ex = make_okx()
    emu.add_fault("ret_code", "create_order", code=51008)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "f1"})
    emu.add_fault("ret_code", "create_order", code=50011)
    with pytest.raises(ccxt.RateLimitExceeded):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "f2"})
    emu.set_rate_limit(1, venue="okx")
    ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "f3"})
    with pytest.raises(ccxt.RateLimitExceeded):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "f4"})
    assert emu.requests(client_order_id="f4")[0].status == 429
    assert [o.client_order_id for o in emu.orders()] == ["f3"]


def test_timeout_after_booking_is_found_by_clordid(emu, make_okx):
    ex = make_okx(timeout=400)
    emu.add_fault("timeout_after_booking", "create_order", ms=1200)
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "t1"})
    assert ex.fetch_order(None, BTC, {"clientOrderId": "t1"})["filled"] == 1
    assert len(emu.orders(client_order_id="t1")) == 1


def test_fault_rules_match_okx_instrument_ids(emu, make_okx):
    ex = make_okx()
    emu.add_fault("ret_code", "create_order", code=51008, symbol="BTC-USDT-SWAP")
    ex.create_order("ETH/USDT:USDT", "market", "buy", 1, None, {"clientOrderId": "other"})  # not matched
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(BTC, "market", "buy", 1, None, {"clientOrderId": "matched"})
    assert [r.symbol for r in emu.requests(operation="create_order")] == ["ETHUSDT", "BTCUSDT"]
