"""The alert's stop_loss / take_profit / trailing_stop: read in the shapes traders write them,
refused with a named reason otherwise (and the alert still recorded)."""

import json

import pytest

from signals.models import Signal
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo_strategy():
    return StrategyFactory(strategy_id="demo")


def _post(client, **fields):
    return client.post("/tv-webhook", data=json.dumps(alert_body(**fields)), content_type="text/plain")


@pytest.mark.parametrize(
    ("fields", "stored"),
    [
        ({"stop_loss": 64000}, {"stop_loss": {"price": "64000"}}),
        ({"stop_loss": "64000.5"}, {"stop_loss": {"price": "64000.5"}}),
        ({"stop_loss": {"percent": 2}}, {"stop_loss": {"percent": "2"}}),
        ({"take_profit": {"price": 70000}}, {"take_profit": {"price": "70000"}}),
        ({"trailing_stop": {"percent": "1.5"}}, {"trailing_stop": {"percent": "1.5"}}),
        ({"trailing_stop": 250}, {"trailing_stop": {"distance": "250"}}),
        (
            {"stop_loss": {"PERCENT": 1}, "take_profit": {"percent": 3}},
            {"stop_loss": {"percent": "1"}, "take_profit": {"percent": "3"}},
        ),
    ],
)
def test_protective_levels_are_stored_normalised_with_the_signal(client, fields, stored):
    response = _post(client, **fields)
    assert response.status_code == 202, response.content
    assert Signal.objects.get(pk=response.json()["signal_id"]).protection == stored


def test_an_alert_without_protective_fields_stores_none(client):
    response = _post(client)
    assert Signal.objects.get(pk=response.json()["signal_id"]).protection is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stop_loss": -5}, "greater than 0"),
        ({"stop_loss": {"percent": 150}}, "below 100"),
        ({"stop_loss": {"percent": 1, "price": 3}}, "one of price / percent"),
        ({"take_profit": {"ratio": 2}}, "one of price / percent"),
        ({"trailing_stop": {"price": 5}}, "one of distance / percent"),
        ({"stop_loss": "{{plot_0}}"}, "placeholder"),
        ({"take_profit": "soon"}, "must be a number"),
    ],
)
def test_bad_protective_levels_are_named_in_a_400_and_the_alert_recorded(client, fields, message):
    response = _post(client, **fields)
    assert response.status_code == 400
    name = next(iter(fields))
    assert message in response.json()["errors"][name]
    assert Signal.objects.filter(status=Signal.Status.REJECTED).count() == 1
