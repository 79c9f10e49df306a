"""Every venue error class we map, produced by real ccxt over HTTP against the emulator,
lands in our own hierarchy with the meaning an operator needs."""

from decimal import Decimal

import pytest

from execution.exchanges import Misconfigured, OrderRejected, RateLimited, TemporaryError
from execution.exchanges.ccxt_gateway import CcxtGateway

from .conftest import KEY, PASSPHRASE, SECRET


def gateway(emu, exchange="bybit", secret=SECRET, timeout=None, settings=None, password=PASSPHRASE, **kwargs):
    if settings is not None and timeout is not None:
        settings.EXCHANGE_TIMEOUT_SECONDS = timeout
    return CcxtGateway(
        account_id=1,
        exchange=exchange,
        mode="testnet",
        market_type=kwargs.pop("market_type", "linear"),
        credentials={"apiKey": KEY, "secret": secret, "password": password},
        base_url=emu.url,
        label="t",
        **kwargs,
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


@pytest.mark.parametrize(
    ("exchange", "fault", "expected", "words"),
    [
        ("bitget", {"action": "ret_code", "code": 40762}, OrderRejected, "insufficient funds"),
        ("bitget", {"action": "ret_code", "code": 45110}, OrderRejected, "invalid order"),
        ("bitget", {"action": "ret_code", "code": 429}, RateLimited, ""),
        ("bitget", {"action": "ret_code", "code": 40015}, TemporaryError, ""),  # "system is abnormal": ambiguous
        ("bitget", {"action": "ret_code", "code": 40786}, TemporaryError, ""),  # duplicate: it exists, look it up
        ("bitget", {"action": "ret_code", "code": 22002}, OrderRejected, "no position to close"),
        ("bitget", {"action": "http_5xx_before_booking", "status": 503}, TemporaryError, ""),
        ("okx", {"action": "ret_code", "code": 51008}, OrderRejected, "insufficient funds"),
        ("okx", {"action": "ret_code", "code": 51121}, OrderRejected, "invalid order"),
        ("okx", {"action": "ret_code", "code": 50011}, RateLimited, ""),
        ("okx", {"action": "ret_code", "code": 51016}, OrderRejected, "invalid order"),
        ("okx", {"action": "ret_code", "code": 51169}, OrderRejected, "no position in this direction"),
        ("okx", {"action": "ret_code", "code": 50013}, TemporaryError, ""),  # "system is busy"
        ("okx", {"action": "http_5xx_before_booking", "status": 502}, TemporaryError, ""),
    ],
)
def test_bitget_and_okx_errors_translate_to_what_the_engine_must_do(emu, exchange, fault, expected, words):
    emu.set_price("BTCUSDT", "65000")
    action = fault.pop("action")
    emu.add_fault(action, "create_order", count=1, **fault)
    with pytest.raises(expected) as info:
        place(gateway(emu, exchange=exchange), cid="tvvenue1")
    assert words in str(info.value).lower()


@pytest.mark.parametrize("exchange", ["bitget", "okx"])
def test_a_wrong_passphrase_is_misconfigured(emu, exchange):
    with pytest.raises(Misconfigured):
        place(gateway(emu, exchange=exchange, password="wrong"))
    assert emu.orders() == []


@pytest.mark.parametrize("exchange", ["bitget", "okx"])
def test_bitget_and_okx_lookup_by_client_id_and_reuse_rules(emu, exchange):
    emu.set_price("BTCUSDT", "65000")
    gw = gateway(emu, exchange=exchange)
    state = place(gw, cid="tvfind2")
    assert state.exchange_order_id and state.client_order_id == "tvfind2"
    found = gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvfind2")
    assert found.status == "filled" and found.filled == Decimal("0.01") and found.average == Decimal("65000")
    assert gw.find_order(symbol="BTC/USDT:USDT", client_order_id="tvnever") is None
    assert gw.cancel_order(symbol="BTC/USDT:USDT", client_order_id="tvfind2").status == "filled"
    # Both accept a client id again once its order is done, so a resend needs the long grace.
    assert gw.client_id_always_unique is False


def test_a_client_id_a_venue_would_refuse_is_never_sent(emu):
    gw = gateway(emu, exchange="okx")
    with pytest.raises(OrderRejected, match="letters and digits only"):
        place(gw, cid="tv-not-alnum")
    assert emu.requests(operation="create_order") == []


def test_our_client_ids_are_valid_on_every_venue(db):
    from execution.engine.plan import client_order_id_for
    from execution.exchanges import CLIENT_ID_RULES, client_order_id_problem

    longest = client_order_id_for(signal_id=2**63 - 1, leg=99)
    assert len(longest) <= 32
    for exchange in CLIENT_ID_RULES:
        assert client_order_id_problem(exchange, longest) == ""
        assert client_order_id_problem(exchange, client_order_id_for(signal_id=1, leg=1)) == ""


@pytest.mark.parametrize("exchange", ["bybit", "binanceusdm", "bitget", "okx"])
def test_an_account_set_up_as_the_venue_expects_has_no_setup_problems(emu, exchange):
    assert gateway(emu, exchange=exchange).account_setup_problems() == []


def test_binance_in_hedge_mode_is_explained_and_refuses_one_way_orders(emu):
    emu.set_price("BTCUSDT", "65000")
    emu.set_position_mode("hedge", venue="binance")
    gw = gateway(emu, exchange="binanceusdm")
    [problem] = gw.account_setup_problems()
    assert "Hedge Mode" in problem and "One-way Mode" in problem
    with pytest.raises(OrderRejected, match="-4061"):
        place(gw, cid="tvbinhedge")
