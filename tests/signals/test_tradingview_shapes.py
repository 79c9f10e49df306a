"""Real TradingView message shapes (kept verbatim under tests/fixtures/tradingview) and what
the webhook does with each: the content type TradingView would send is used, as it would be."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings

from signals.models import Signal, WebhookRejection
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tradingview"

NOT_JSON = {"not_json": True}
# file, content type TradingView sends it with, HTTP status, status, what must be true of the row
SHAPES = [
    ("seed_template.json", "application/json", 202, "accepted", {"action": "buy", "ticker": "BTCUSDT.P"}),
    (
        "strategy_entry_long.json",
        "application/json",
        202,
        "accepted",
        {"tv_order_id": "Long Entry", "market_position": "long", "prev_market_position": "flat"},
    ),
    (
        "strategy_exit_short_lowercase.json",
        "application/json",
        202,
        "accepted",
        {"action": "close_short", "exchange": "OKX", "ticker": "ETHUSDT.P", "market_position_size": Decimal(0)},
    ),
    ("exchange_prefixed_ticker.json", "application/json", 202, "accepted", {"ticker": "BTCUSDT.P"}),
    ("delayed_feed_exchange.json", "application/json", 202, "accepted", {"exchange": "BYBIT"}),
    ("numeric_strings.json", "application/json", 202, "accepted", {"price": Decimal(65000), "volume": Decimal("0.5")}),
    ("unknown_extra_fields.json", "application/json", 202, "accepted", {"exchange": "BITGET"}),
    # TradingView sends text/plain whenever it does not consider the message JSON; the body
    # is parsed as JSON regardless.
    (
        "one_line_text_plain.txt",
        "text/plain; charset=utf-8",
        202,
        "accepted",
        {"content_type": "text/plain; charset=utf-8"},
    ),
    # Bare placeholders TradingView could not fill leave invalid JSON, sent as text/plain:
    # refused and counted, never stored (nothing in it can be authenticated).
    ("bare_placeholder_not_replaced.txt", "text/plain; charset=utf-8", 400, "rejected", NOT_JSON),
    ("empty_contracts_trailing_comma.txt", "text/plain; charset=utf-8", 400, "rejected", NOT_JSON),
    ("plain_text_alert.txt", "text/plain; charset=utf-8", 400, "rejected", NOT_JSON),
    # Quoted placeholders are valid JSON, so each unfilled field is named.
    ("quoted_placeholder_not_replaced.json", "application/json", 400, "rejected", {"errors": ["action", "price"]}),
]


def captured_long_ago():
    """The strategy the fixtures name. They were captured days ago: the age limit is off so
    that their {{timenow}} does not make the entries stale."""
    return StrategyFactory(strategy_id="demo", max_signal_age_seconds=0)


def fixture_body(name: str) -> str:
    return (FIXTURES / name).read_text().replace("__PASSPHRASE__", settings.WEBHOOK_PASSPHRASE)


@pytest.mark.parametrize(
    ("name", "content_type", "http_status", "status", "expect"), SHAPES, ids=[s[0] for s in SHAPES]
)
def test_tradingview_message_shape_has_the_documented_outcome(client, name, content_type, http_status, status, expect):
    captured_long_ago()
    response = client.post("/tv-webhook", data=fixture_body(name), content_type=content_type)

    assert response.status_code == http_status, response.content
    body = response.json()
    assert body["status"] == status
    if expect is NOT_JSON:
        assert body["reason"].startswith("not JSON") and body["signal_id"] is None
        assert Signal.objects.count() == 0
        named = "demo" if '"strategy_id": "demo"' in fixture_body(name) else ""
        assert WebhookRejection.objects.get(reason="not_json").last_strategy_key == named
        return
    signal = Signal.objects.get(pk=body["signal_id"])
    assert signal.status == status
    assert signal.content_type == content_type
    for field, value in expect.items():
        if field == "errors":
            assert sorted(signal.errors) == value
            assert sorted(body["errors"]) == value
        else:
            assert getattr(signal, field) == value
    assert settings.WEBHOOK_PASSPHRASE not in signal.raw_body


def test_unknown_fields_are_kept_with_the_payload_and_ignored(client):
    captured_long_ago()
    response = client.post(
        "/tv-webhook", data=fixture_body("unknown_extra_fields.json"), content_type="application/json"
    )

    signal = Signal.objects.get(pk=response.json()["signal_id"])
    assert signal.payload["alert_message"] == "rsi > 70"
    assert signal.payload["syminfo"] == {"mintick": 0.1, "currency": "USDT"}
    assert signal.payload["tags"] == ["swing", "btc"]
    assert "passphrase" not in signal.payload


def test_strategy_alert_keeps_the_latency_chain_origin(client):
    captured_long_ago()
    response = client.post(
        "/tv-webhook", data=fixture_body("strategy_entry_long.json"), content_type="application/json"
    )

    signal = Signal.objects.get(pk=response.json()["signal_id"])
    assert signal.fired_at.isoformat() == "2026-11-24T01:59:59+00:00"
    assert signal.bar_time.isoformat() == "2026-11-24T01:00:00+00:00"
    assert signal.received_at <= signal.committed_at
