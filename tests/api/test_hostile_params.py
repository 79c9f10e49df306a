"""Hand-made query strings against every list endpoint: a crafted cursor or a junk filter is a
400 (or simply ignored), never a 500."""

from __future__ import annotations

import base64

import pytest

from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = {
    "/api/signals/": ["strategy", "status", "action", "ticker", "is_test", "received_after", "received_before"],
    "/api/orders/": ["strategy", "account", "status", "symbol", "signal", "created_after", "created_before"],
    "/api/fills/": ["order", "strategy", "symbol", "filled_after"],
    "/api/positions/": ["account", "strategy", "symbol", "open"],
    "/api/accounts/": ["exchange", "mode", "halted"],
    "/api/strategies/": ["enabled", "halted"],
}

JUNK = ["junk", "\x00", "9" * 40, "-1", "1e400", "2026-13-45T99:99", "true\nfalse", "é", "' OR 1=1 --", "%00"]


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CRAFTED_CURSORS = [
    cursor("p=abc"),
    cursor("p=-1"),
    cursor("p=1.5"),
    cursor("p=99999999999999999999999"),
    cursor("p=%00"),
    cursor("o=-3"),
    cursor("o=abc&p=5"),
    cursor("r=x&p=5"),
    "!!!not-base64!!!",
    "é",
    cursor("p=" + "9" * 5000),
]


@pytest.fixture(autouse=True)
def rows():
    strategy = StrategyFactory(strategy_id="demo", account=ExchangeAccountFactory())
    for _ in range(3):
        SignalFactory(strategy=strategy)


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
@pytest.mark.parametrize("crafted", CRAFTED_CURSORS, ids=range(len(CRAFTED_CURSORS)))
def test_a_crafted_cursor_is_a_400_on_every_list(read_api, path, crafted):
    response = read_api.get(path, {"cursor": crafted})

    assert response.status_code == 400, (path, crafted, response.status_code)
    assert "Invalid cursor" in response.json()["detail"]


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_the_cursor_of_a_real_page_still_works(read_api, path):
    first = read_api.get(path, {"page_size": 1})
    assert first.status_code == 200
    if first.json()["next"]:
        assert read_api.get(first.json()["next"]).status_code == 200


@pytest.mark.parametrize("path", LIST_ENDPOINTS)
def test_junk_in_any_query_parameter_is_never_a_server_error(read_api, path):
    for name in [*LIST_ENDPOINTS[path], "page_size", "ordering", "format", "unknown"]:
        for value in JUNK:
            response = read_api.get(path, {name: value})
            assert response.status_code < 500, (path, name, value, response.status_code)
            assert response.status_code in (200, 400, 404), (path, name, value, response.status_code)
