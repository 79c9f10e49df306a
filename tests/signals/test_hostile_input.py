"""Hostile or broken bodies get a clear 4xx, never a 500 or a 503, and cannot fill the disk."""

import json

import pytest

from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo():
    return StrategyFactory(strategy_id="demo")


@pytest.mark.parametrize("number", ["1e5000", "1e999999999", "123456789012345678901234567890"])
def test_absurd_numbers_in_unknown_fields_are_kept_as_text_not_a_500(client, number):
    body = json.dumps(alert_body()).rstrip("}") + f', "extra": {number}}}'
    response = client.post("/tv-webhook", data=body, content_type="application/json")
    assert response.status_code == 202, response.content
    assert isinstance(Signal.objects.get().payload["extra"], str)


def test_an_absurd_price_is_named_not_a_500(client):
    body = json.dumps(alert_body()).replace('"price": 65000.5', '"price": 1e999999999')
    response = client.post("/tv-webhook", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "price" in response.json()["errors"]


@pytest.mark.parametrize("body", ['{"action": "buy\\u0000"}', "hello\x00world"])
def test_nul_characters_are_refused_as_not_json_instead_of_breaking_the_database(client, body):
    response = client.post("/tv-webhook", data=body, content_type="text/plain")
    assert response.status_code == 400
    assert "NUL" in response.json()["reason"]
    signal = Signal.objects.get()
    assert "\x00" not in signal.raw_body


def test_a_flood_of_garbage_is_stored_up_to_a_budget_then_only_counted(client):
    from signals import services

    services._unparsed_budget.minute = 0  # a fresh minute for this test
    for i in range(70):
        response = client.post("/tv-webhook", data=f"garbage {i}", content_type="text/plain")
        assert response.status_code == 400
    assert Signal.objects.count() <= 60
    assert WebhookRejection.objects.get(reason="not_json").count >= 10
