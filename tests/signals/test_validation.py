"""Every bad field is named in a 400, the rejected alert is still recorded, and TradingView's
own spellings (case, delayed-feed suffix, exchange-prefixed tickers) are understood."""

import json

import pytest

from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_strategy():
    return StrategyFactory(strategy_id="demo")


BAD_FIELDS = [
    ("price", "{{close}}", "unreplaced TradingView placeholder {{close}}"),
    ("volume", "{{strategy.order.contracts}}", "placeholder {{strategy.order.contracts}}"),
    ("price", "NaN", "finite"),
    ("price", "Infinity", "finite"),
    ("volume", "-Infinity", "finite"),
    ("price", "", "is empty"),
    ("volume", "   ", "is empty"),
    ("price", ..., "is required"),
    ("price", 0, "greater than 0"),
    ("volume", "0", "greater than 0"),
    ("price", -1, "greater than 0"),
    ("volume", "-0.5", "greater than 0"),
    ("price", "sixty", "must be a number"),
    ("price", True, "must be a number"),
    ("action", "hold", "must be one of buy, sell, close_long, close_short, close_all"),
    ("action", "", "is empty"),
    ("exchange", "KRAKEN", "must be one of BYBIT, BINANCE, BITGET, OKX"),
    ("exchange", "COINBASE_DL", "must be one of"),
    ("ticker", "BTC/USDT", "not a TradingView ticker"),
    ("ticker", "{{ticker}}", "placeholder {{ticker}}"),
    ("bar_time", "yesterday", "must be a time"),
    ("strategy_id", "no-such-strategy", "no strategy is configured"),
    # Types: names and codes must be JSON strings, whatever else would render as text.
    ("ticker", "BYBIT:", "no symbol after the exchange prefix"),
    ("ticker", 123, "must be a string in quotes (got a number: 123)"),
    ("ticker", ["BTCUSDT"], "must be a string in quotes (got a list"),
    ("action", 1, "must be a string in quotes"),
    ("action", {"buy": True}, "must be a string in quotes (got an object"),
    ("exchange", True, "must be a string in quotes (got true/false"),
    ("strategy_id", 42, "must be a string in quotes"),
    ("market_position", 0, "must be a string in quotes"),
    ("comment", ["a"], "must be a string in quotes"),
    ("order_id", {"id": 1}, "must be a string in quotes"),
    ("timeframe", False, "must be a string in quotes"),
    ("price", [65000], "must be a number"),
    ("volume", {"qty": 1}, "must be a number"),
    ("market_position_size", "lots", "must be a number"),
    ("bar_time", True, "must be a time"),
    ("bar_time", [1], "must be a time"),
    ("fired_at", "0001-01-01T00:00:00Z", "not a plausible alert time"),
    ("bar_time", "9999-12-31T23:59:59-14:00", "must be a time"),
    ("fired_at", 10**30, "must be a time"),
    ("volume", 1e-15, "is out of range"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_bad_field_is_rejected_by_name_and_recorded(post_alert, field, value, message):
    response = post_alert(**{field: value})

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "rejected"
    assert list(body["errors"]) == [field]
    assert message in body["errors"][field]
    signal = Signal.objects.get(pk=body["signal_id"])
    assert signal.status == Signal.Status.REJECTED
    assert signal.errors == body["errors"]
    assert field in signal.reason


def test_all_bad_fields_are_named_at_once(post_alert):
    response = post_alert(price="NaN", volume=-1, action="hold", exchange="KRAKEN", ticker="BTC/USDT")

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"price", "volume", "action", "exchange", "ticker"}


def test_json_nan_literal_is_named_not_a_crash(post_alert):
    text = json.dumps(alert_body(price=0.5)).replace("0.5", "NaN")
    response = post_alert(raw=text)

    assert response.status_code == 400
    assert "finite" in response.json()["errors"]["price"]


@pytest.mark.parametrize("action", ["BUY", "Sell", "CLOSE_LONG", "close_Short", "Close_All"])
def test_actions_are_case_insensitive(post_alert, action):
    response = post_alert(action=action)

    assert response.status_code == 202
    assert Signal.objects.get().action == action.lower()


@pytest.mark.parametrize(
    ("exchange", "stored"),
    [("bybit", "BYBIT"), ("Binance", "BINANCE"), ("BYBIT_DL", "BYBIT"), ("binance_dl", "BINANCE"), ("OKX_DLY", "OKX")],
)
def test_exchanges_are_case_insensitive_and_delayed_suffix_is_understood(post_alert, exchange, stored):
    response = post_alert(exchange=exchange)

    assert response.status_code == 202
    assert Signal.objects.get().exchange == stored


@pytest.mark.parametrize(
    ("ticker", "stored"), [("BTCUSDT", "BTCUSDT"), ("BTCUSDT.P", "BTCUSDT.P"), ("BYBIT:BTCUSDT.P", "BTCUSDT.P")]
)
def test_tickers_are_taken_as_tradingview_writes_them(post_alert, ticker, stored):
    response = post_alert(ticker=ticker)

    assert response.status_code == 202
    assert Signal.objects.get().ticker == stored


def test_exchange_can_come_from_the_ticker_prefix(post_alert):
    response = post_alert(ticker="BINANCE:ETHUSDT.P", exchange=...)

    assert response.status_code == 202
    assert Signal.objects.get().exchange == "BINANCE"


@pytest.mark.parametrize(
    "raw",
    ["[1, 2, 3]", '"just a string"', "", "\xff\xfe".encode("latin-1"), '{"a": ' * 1500 + "1" + "}" * 1500, "[" * 5000],
)
def test_body_that_is_not_a_json_object_is_refused_as_not_json_and_only_counted(post_alert, raw):
    response = post_alert(raw=raw)

    assert response.status_code == 400
    assert response.json()["reason"].startswith("not JSON")
    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get().reason == "not_json"


def test_oversized_body_is_refused_without_a_signal(post_alert, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    response = post_alert(comment="x" * 2000)

    assert response.status_code == 413
    assert Signal.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [("timeframe", 60, "60"), ("order_id", 7, "7"), ("comment", 1.5, "1.5")],
)
def test_free_text_fields_take_a_bare_number_as_text(post_alert, field, value, stored):
    response = post_alert(**{field: value})

    assert response.status_code == 202, response.content
    column = {"order_id": "tv_order_id"}.get(field, field)
    assert getattr(Signal.objects.get(), column) == stored
