"""Every venue error class we map, produced by real ccxt over HTTP against the emulator,
lands in our own hierarchy with the meaning an operator needs."""

from decimal import Decimal

import pytest

from execution.exchanges import Misconfigured, OrderRejected, RateLimited, TemporaryError
from execution.exchanges.ccxt_gateway import CcxtGateway

from .conftest import KEY, SECRET


def gateway(emu, exchange="bybit", secret=SECRET, timeout=None, settings=None):
    if settings is not None and timeout is not None:
        settings.EXCHANGE_TIMEOUT_SECONDS = timeout
    return CcxtGateway(
        account_id=1,
        exchange=exchange,
        mode="testnet",
        market_type="linear",
        credentials={"apiKey": KEY, "secret": secret},
        base_url=emu.url,
        label="t",
    )


def place(gw, cid="tvtest1", symbol="BTC/USDT:USDT"):
    return gw.create_order(
        symbol=symbol,
        side="buy",
        order_type="market",
        qty=Decimal("0.01"),
        price=None,
        reduce_only=False,
        client_order_id=cid,
    )


@pytest.mark.parametrize(
    ("fault", "expected", "words"),
    [
        ({"action": "ret_code", "code": 110007}, OrderRejected, "insufficient funds"),
        ({"action": "ret_code", "code": 110094}, OrderRejected, "invalid order"),
        ({"action": "ret_code", "code": 10001}, OrderRejected, "bad request"),
        ({"action": "ret_code", "code": 10006}, RateLimited, ""),
        ({"action": "http_status", "status": 429}, RateLimited, ""),
        ({"action": "http_5xx_before_booking", "status": 503}, TemporaryError, ""),
        ({"action": "ret_code", "code": 10016}, TemporaryError, ""),  # venue internal error: ambiguous
        ({"action": "ret_code", "code": 10003, "status": 401}, Misconfigured, ""),
        ({"action": "drop_connection", "when": "before"}, TemporaryError, ""),
    ],
)
def test_bybit_errors_translate_to_what_the_engine_must_do(emu, fault, expected, words):
    emu.set_price("BTCUSDT", "65000")
    action = fault.pop("action")
    emu.add_fault(action, "create_order", count=1, **fault)
    with pytest.raises(expected) as info:
        place(gateway(emu))
    assert words in str(info.value).lower()


def test_a_request_the_venue_holds_past_our_timeout_is_temporary(emu, settings):
    emu.set_price("BTCUSDT", "65000")
    emu.add_fault("timeout_after_booking", "create_order", ms=2000, count=1)
    with pytest.raises(TemporaryError):
        place(gateway(emu, timeout=0.5, settings=settings))
    assert len(emu.orders(client_order_id="tvtest1")) == 1  # booked all the same: look it up


def test_wrong_secret_is_misconfigured(emu):
    with pytest.raises(Misconfigured):
        place(gateway(emu, secret="wrong"))


def test_duplicate_client_id_is_refused_by_the_venue(emu):
    emu.set_price("BTCUSDT", "65000")
    gw = gateway(emu)
    place(gw, cid="tvdup1")
    with pytest.raises(OrderRejected):
        place(gw, cid="tvdup1")
    assert len(emu.orders(client_order_id="tvdup1")) == 1


def test_lookup_by_client_id_finds_bybit_orders_open_and_closed(emu):
    emu.set_price("BTCUSDT", "65000")
    gw = gateway(emu)
    place(gw, cid="tvfind1")
    state = gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvfind1")
    assert state is not None and state.status == "filled" and state.filled == Decimal("0.01")
    assert gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvnever") is None


@pytest.mark.parametrize(
    ("fault", "expected", "words"),
    [
        ({"action": "ret_code", "code": -2019}, OrderRejected, "insufficient funds"),
        ({"action": "ret_code", "code": -1003, "status": 429}, RateLimited, ""),
        ({"action": "http_5xx_before_booking", "status": 503}, TemporaryError, ""),
    ],
)
def test_binance_usdm_errors_translate_too(emu, fault, expected, words):
    emu.set_price("BTCUSDT", "65000")
    action = fault.pop("action")
    emu.add_fault(action, "create_order", count=1, **fault)
    with pytest.raises(expected) as info:
        place(gateway(emu, exchange="binanceusdm"), cid="tvbin1")
    assert words in str(info.value).lower()


def test_binance_usdm_market_order_and_lookup_by_client_id(emu):
    emu.set_price("BTCUSDT", "65000")
    gw = gateway(emu, exchange="binanceusdm")
    state = place(gw, cid="tvbin2")
    assert state.status == "filled" and state.filled == Decimal("0.01")  # RESULT response carries the fill
    found = gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvbin2")
    assert found is not None and found.exchange_order_id == state.exchange_order_id
    assert gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvnever") is None
    assert gw.client_id_always_unique is False
