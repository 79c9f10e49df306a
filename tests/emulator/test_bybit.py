"""Real ccxt.bybit against the emulator: what a trader relies on, no faults."""

from __future__ import annotations

import ccxt
import pytest

from emulator import ExchangeEmulator
from execution.exchanges.redirect import redirect_exchange

from .conftest import KEY, KEY2, SECRET, bybit_client

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def test_load_markets_sends_only_instrument_requests(emu, bybit):
    linear = [m for m in bybit.markets.values() if m["linear"]]
    spot = [m for m in bybit.markets.values() if m["spot"]]
    assert len(linear) >= 25
    assert len(spot) >= 25
    btc = bybit.market(BTC)
    assert btc["id"] == "BTCUSDT"
    assert btc["precision"] == {"amount": 0.001, "price": 0.1}
    assert btc["limits"]["cost"]["min"] == 5
    assert btc["limits"]["amount"]["min"] == 0.001
    assert bybit.market("BTC/USDT")["precision"]["amount"] == 0.000001
    paths = [(r.path, r.query) for r in emu.requests()]
    assert paths == [
        ("/v5/market/instruments-info", "category=linear&limit=1000"),
        ("/v5/market/instruments-info", "category=linear&limit=1000&status=PreLaunch"),
        ("/v5/market/instruments-info", "category=spot"),
    ]


def test_default_ccxt_options_work_too(emu):
    # Untuned ccxt: fetchCurrencies, every market type, and the UTA probe on
    # the first private call - the 12 + 3 requests the reference measured.
    ex = redirect_exchange(ccxt.bybit({"apiKey": KEY, "secret": SECRET}), emu.url)
    ex.load_markets()
    ex.fetch_balance()
    assert ex.options["enableUnifiedAccount"] is True
    paths = [r.path for r in emu.requests()]
    assert paths[0] == "/v5/asset/coin/query-info"
    assert paths.count("/v5/market/instruments-info") == 11
    assert paths[-3:] == [
        "/v5/user/query-api",
        "/v5/account/info",
        "/v5/account/wallet-balance",
    ]
    assert all(r.status == 200 for r in emu.requests())


def test_fetch_time_matches_emulator_clock(emu, bybit):
    emu.set_clock_offset(-60_000)
    assert abs(bybit.fetch_time() - (bybit.milliseconds() - 60_000)) < 1000


def test_linear_market_order_fills_and_moves_position_and_balance(emu, bybit):
    created = bybit.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "tv-1"})
    # Like real Bybit, create returns only the ids.
    assert created["id"] and created["clientOrderId"] == "tv-1"
    assert created["status"] is None

    [order] = bybit.fetch_open_orders(BTC, None, None, {"orderLinkId": "tv-1"})
    assert order["id"] == created["id"]
    assert order["status"] == "closed"
    assert order["filled"] == 0.01
    assert order["average"] == 65000
    assert order["fee"] == {"cost": pytest.approx(0.3575), "currency": "USDT"}

    [position] = bybit.fetch_positions([BTC])
    assert position["side"] == "long"
    assert position["contracts"] == 0.01
    assert position["entryPrice"] == 65000

    balance = bybit.fetch_balance()["USDT"]
    assert balance["total"] == pytest.approx(100000 - 0.3575)
    assert balance["used"] == pytest.approx(65)  # 650 notional at 10x

    emu.set_price(BTC, 66000)
    assert bybit.fetch_position(BTC)["unrealizedPnl"] == pytest.approx(10)

    # reduceOnly larger than the position is trimmed to it.
    bybit.create_order(BTC, "market", "sell", 0.02, None, {"reduceOnly": True, "clientOrderId": "tv-2"})
    [closing] = bybit.fetch_canceled_and_closed_orders(BTC, None, None, {"orderLinkId": "tv-2"})
    assert closing["filled"] == 0.01
    assert bybit.fetch_positions() == []
    flat = bybit.fetch_positions([BTC])[0]
    assert flat["contracts"] == 0 and flat["side"] is None
    fees = 0.3575 + 0.01 * 66000 * 0.00055
    assert bybit.fetch_balance()["USDT"]["total"] == pytest.approx(100000 + 10 - fees)
    create_body = emu.requests("order/create")[1].params
    assert create_body["reduceOnly"] is True


def test_short_position_and_flip(emu, bybit):
    bybit.create_order(ETH, "market", "sell", 1, None)
    assert bybit.fetch_position(ETH)["side"] == "short"
    bybit.create_order(ETH, "market", "buy", 3, None)
    position = bybit.fetch_position(ETH)
    assert position["side"] == "long"
    assert position["contracts"] == 2


def test_limit_order_rests_cancels_and_fills_on_price_move(emu, bybit):
    bybit.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "lim-1"})
    [resting] = bybit.fetch_open_orders(ETH)
    assert resting["status"] == "open"
    assert resting["remaining"] == 0.1
    assert resting["price"] == 3000

    bybit.cancel_order(None, ETH, {"orderLinkId": "lim-1"})
    [cancelled] = bybit.fetch_canceled_and_closed_orders(ETH, None, None, {"orderLinkId": "lim-1"})
    assert cancelled["status"] == "canceled"
    assert bybit.fetch_open_orders(ETH) == []
    with pytest.raises(ccxt.OrderNotFound):
        bybit.cancel_order(None, ETH, {"orderLinkId": "lim-1"})
    # fetch_closed_order filters on Filled: a cancelled order is "not found".
    with pytest.raises(ccxt.OrderNotFound):
        bybit.fetch_closed_order(cancelled["id"], ETH)

    order = bybit.create_order(ETH, "limit", "buy", 0.1, 3000, {"clientOrderId": "lim-2"})
    filled = emu.set_price(ETH, 2990)
    assert [o.order_id for o in filled] == [order["id"]]
    closed = bybit.fetch_closed_order(order["id"], ETH)
    assert closed["status"] == "closed"
    assert closed["average"] == 3000  # a resting order fills at its limit price
    [trade] = bybit.fetch_order_trades(None, ETH, None, None, {"clientOrderId": "lim-2"})
    assert trade["takerOrMaker"] == "maker"


def test_marketable_limit_fills_at_once(emu, bybit):
    order = bybit.create_order(ETH, "limit", "buy", 0.1, 3500)
    fetched = bybit.fetch_order(order["id"], ETH, {"acknowledged": True})
    assert fetched["status"] == "closed"
    assert fetched["average"] == 3400


def test_cancel_by_order_id(emu, bybit):
    order = bybit.create_order(ETH, "limit", "sell", 0.1, 4000)
    bybit.cancel_order(order["id"], ETH)
    assert bybit.fetch_order(order["id"], ETH, {"acknowledged": True})["status"] == "canceled"


def test_realtime_by_id_open_only_flag():
    # With the flag off, /v5/order/realtime by id only knows open orders.
    with ExchangeEmulator(accounts={KEY: SECRET}, realtime_by_id_any_status=False) as emu:
        ex = bybit_client(emu.url)
        ex.load_markets()
        order = ex.create_order(BTC, "market", "buy", 0.01, None)
        with pytest.raises(ccxt.OrderNotFound):
            ex.fetch_order(order["id"], BTC, {"acknowledged": True})
        assert ex.fetch_closed_order(order["id"], BTC)["status"] == "closed"


def test_lookup_with_id_none_is_not_found_like_real_bybit(emu, bybit):
    bybit.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "x-1"})
    # ccxt sends the literal orderId=None; Bybit's orderId priority loses it.
    with pytest.raises(ccxt.OrderNotFound):
        bybit.fetch_order(None, BTC, {"acknowledged": True, "orderLinkId": "x-1"})
    assert emu.requests("order/realtime")[-1].params["orderId"] == "None"


def test_spot_orders(emu, bybit):
    bybit.create_order("BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "s-1"})
    [buy] = bybit.fetch_canceled_and_closed_orders("BTC/USDT", None, None, {"orderLinkId": "s-1"})
    assert buy["status"] == "closed"
    assert buy["filled"] == 0.001
    assert buy["fee"]["currency"] == "BTC"
    assert emu.requests("order/create")[0].params["marketUnit"] == "baseCoin"
    balance = bybit.fetch_balance()
    assert balance["BTC"]["total"] == pytest.approx(0.000999)
    assert balance["USDT"]["total"] == pytest.approx(100000 - 65)

    bybit.create_order("BTC/USDT", "limit", "sell", 0.0005, 70000, {"clientOrderId": "s-2"})
    assert bybit.fetch_balance()["BTC"]["used"] == pytest.approx(0.0005)
    bybit.cancel_order(None, "BTC/USDT", {"orderLinkId": "s-2"})
    assert emu.requests("order/cancel")[0].params["orderFilter"] == "Order"
    with pytest.raises(ccxt.InvalidOrder):  # 170141
        bybit.create_order("BTC/USDT", "limit", "sell", 0.0005, 70000, {"clientOrderId": "s-2"})
    with pytest.raises(ccxt.InsufficientFunds):  # 170131: 0.001 > 0.000999
        bybit.create_order("BTC/USDT", "market", "sell", 0.001, None)


def test_reduce_only_when_flat_is_rejected(emu, bybit):
    with pytest.raises(ccxt.InvalidOrder, match="110017"):
        bybit.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
    emu.set_position(BTC, "-0.01", account=KEY)
    with pytest.raises(ccxt.InvalidOrder, match="110017"):  # same side does not reduce
        bybit.create_order(BTC, "market", "sell", 0.01, None, {"reduceOnly": True})
    assert emu.orders() == []


def test_duplicate_order_link_id_is_invalid_order(emu, bybit):
    bybit.create_order(BTC, "limit", "buy", 0.01, 60000, {"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="110072") as info:
        bybit.create_order(BTC, "limit", "buy", 0.01, 60000, {"clientOrderId": "dup"})
    assert not isinstance(info.value, ccxt.DuplicateOrderId)
    assert len(emu.orders(client_order_id="dup")) == 1


def test_insufficient_balance(emu, bybit):
    emu.set_balance(50)
    with pytest.raises(ccxt.InsufficientFunds, match="110007"):
        bybit.create_order(BTC, "market", "buy", 0.01, None)
    assert emu.orders() == []


def test_min_notional(emu, bybit):
    emu.set_price(BTC, 1000)
    with pytest.raises(ccxt.InvalidOrder, match="110094"):
        bybit.create_order(BTC, "market", "buy", 0.001, None)


def test_set_leverage_and_unchanged_is_bad_request(emu, bybit):
    bybit.set_leverage(5, BTC)
    with pytest.raises(ccxt.BadRequest, match="110043"):
        bybit.set_leverage(5, BTC)
    bybit.create_order(BTC, "market", "buy", 0.01, None)
    assert bybit.fetch_position(BTC)["leverage"] == 5
    assert bybit.fetch_balance()["USDT"]["used"] == pytest.approx(130)


def test_accounts_are_isolated(emu, bybit, make_bybit):
    other = make_bybit(key=KEY2, secret="other-secret")
    bybit.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "same"})
    other.create_order(BTC, "market", "buy", 0.02, None, {"clientOrderId": "same"})
    assert bybit.fetch_position(BTC)["contracts"] == 0.01
    assert other.fetch_position(BTC)["contracts"] == 0.02
    assert {o.account for o in emu.orders(client_order_id="same")} == {KEY, KEY2}


def test_wrong_secret_is_authentication_error(emu, make_bybit):
    ex = make_bybit(secret="wrong")
    with pytest.raises(ccxt.AuthenticationError, match="10004"):
        ex.create_order(BTC, "market", "buy", 0.01, None)
    assert emu.orders() == []


def test_unknown_key_is_authentication_error_with_401(emu, make_bybit):
    ex = make_bybit(key="nobody")
    with pytest.raises(ccxt.AuthenticationError, match="10003"):
        ex.fetch_balance()
    assert emu.requests("wallet-balance")[-1].status == 401


def test_stale_timestamp_is_invalid_nonce(emu, make_bybit):
    ex = make_bybit(options={"timeDifference": 6000})  # 6 s behind, window 5 s
    with pytest.raises(ccxt.InvalidNonce, match="10002"):
        ex.create_order(BTC, "market", "buy", 0.01, None)
    ahead = make_bybit(options={"timeDifference": -1500})  # 1.5 s ahead
    with pytest.raises(ccxt.InvalidNonce):
        ahead.fetch_balance()
    assert emu.orders() == []
