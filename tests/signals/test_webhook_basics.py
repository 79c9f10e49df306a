"""The webhook's core promises, through the real view and database."""

import json

import pytest

from signals.models import Signal, WebhookRejection
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_strategy():
    return StrategyFactory(strategy_id="demo")


def test_text_plain_json_alert_is_accepted_and_committed(post_alert):
    response = post_alert(content_type="text/plain")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    signal = Signal.objects.get(pk=body["signal_id"])
    assert signal.status == Signal.Status.ACCEPTED
    assert signal.content_type == "text/plain"
    assert "passphrase" not in signal.payload
    assert "[redacted]" in signal.raw_body
    assert signal.committed_at is not None
    assert isinstance(body["elapsed_ms"], float)


def test_body_that_is_not_json_is_refused_and_counted_not_stored(post_alert):
    response = post_alert(raw="BTCUSDT crossed 65000")
    assert response.status_code == 400
    assert response.json()["signal_id"] is None
    assert response.json()["reason"].startswith("not JSON")
    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get(reason="not_json").count == 1


def test_wrong_passphrase_is_401_counted_and_not_stored(post_alert):
    response = post_alert(passphrase="guess")
    missing = post_alert(passphrase=...)
    assert response.status_code == missing.status_code == 401
    assert response.json()["reason"] == missing.json()["reason"] == "unauthorized"
    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get(reason="bad_passphrase").count == 2


def test_bad_fields_are_each_named(post_alert):
    response = post_alert(price="{{close}}", volume=0, action="hold", exchange="KRAKEN")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"price", "volume", "action", "exchange"}
    assert "{{close}}" in errors["price"]


def test_identical_alert_twice_is_one_signal(post_alert):
    first = post_alert()
    second = post_alert()
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200
    assert second.json() == {**second.json(), "status": "duplicate", "signal_id": first.json()["signal_id"]}
    assert Signal.objects.count() == 1
    assert Signal.objects.get().duplicate_count == 1


def test_numeric_strings_are_numbers(post_alert):
    response = post_alert(price="65000", volume="0.5")
    assert response.status_code == 202
    assert str(Signal.objects.get().price) == "65000.000000000000"


def test_get_is_refused_with_json(client):
    response = client.get("/tv-webhook")
    assert response.status_code == 405
    assert json.loads(response.content)["status"] == "rejected"
