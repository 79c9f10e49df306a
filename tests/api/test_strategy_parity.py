"""One validator for strategy settings: every setting the admin form refuses, the API refuses
too — 400, naming the field — and the passphrase rules are the same in both."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.forms.models import model_to_dict

from strategies.forms import StrategyAdminForm
from strategies.models import Strategy
from tests.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = pytest.mark.django_db

# (what a script author might send, the field that must be named)
REFUSED = [
    ({"leverage": 150}, "leverage"),  # Bybit allows 100x at most
    ({"leverage": 0}, "leverage"),
    ({"sizing_mode": "percent_equity", "size_value": "500"}, "size_value"),
    ({"sizing_mode": "fixed_base", "size_value": None}, "size_value"),
    ({"sizing_mode": "fixed_quote", "size_value": "0"}, "size_value"),
    ({"order_type": "marketable_limit", "max_slippage_bps": "100000"}, "max_slippage_bps"),
    ({"order_type": "marketable_limit", "max_slippage_bps": "0"}, "max_slippage_bps"),
    ({"order_type": "limit", "limit_offset_bps": "50000"}, "limit_offset_bps"),
    ({"order_type": "limit", "limit_timeout_seconds": 0}, "limit_timeout_seconds"),
    ({"symbol_override": "not a symbol"}, "symbol_override"),
    ({"symbol_override": "BTC/USDT"}, "symbol_override"),  # spot symbol on a perpetual account
    ({"max_position": "0"}, "max_position"),
    ({"sizing_mode": "fixed_base", "size_value": "2", "max_position": "1"}, "size_value"),
    ({"allowed_actions": []}, "allowed_actions"),
    # below the paper exchange's minimum order for BTC/USDT:USDT (0.001)
    ({"sizing_mode": "fixed_base", "size_value": "0.0001"}, "size_value"),
]

PASSPHRASES_REFUSED = ["a", "short-one", " " * 14, "twelve chars with spaces", "tab\tinside-the-phrase"]


@pytest.fixture
def strategy():
    return StrategyFactory(strategy_id="parity", account=ExchangeAccountFactory(exchange="bybit"))


def form_errors(strategy: Strategy, changes: dict) -> dict:
    data = {k: v for k, v in model_to_dict(strategy).items() if v is not None}
    data["account"] = strategy.account_id
    for key, value in changes.items():
        if key == "passphrase":
            data["new_passphrase"] = value
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    form = StrategyAdminForm(data=data, instance=Strategy.objects.get(pk=strategy.pk))
    form.is_valid()
    return form.errors


@pytest.mark.parametrize(("changes", "field"), REFUSED, ids=[f for _, f in REFUSED])
def test_what_the_admin_refuses_the_api_refuses_naming_the_field(control_api, strategy, changes, field):
    assert field in form_errors(strategy, changes)
    response = control_api.patch("/api/strategies/parity/", changes, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    strategy.refresh_from_db()
    assert strategy.leverage is None and strategy.sizing_mode == "signal"  # nothing was saved


@pytest.mark.parametrize("passphrase", PASSPHRASES_REFUSED)
def test_passphrase_rules_are_the_same_in_the_admin_and_the_api(control_api, strategy, passphrase):
    assert "new_passphrase" in form_errors(strategy, {"passphrase": passphrase})
    response = control_api.patch("/api/strategies/parity/", {"passphrase": passphrase}, format="json")
    assert response.status_code == 400 and "passphrase" in response.json()
    strategy.refresh_from_db()
    assert strategy.passphrase_hash == ""


def test_a_valid_passphrase_is_set_through_either_and_empty_removes_it_through_the_api(control_api, strategy):
    assert not form_errors(strategy, {"passphrase": "long-enough-secret"})
    assert (
        control_api.patch("/api/strategies/parity/", {"passphrase": "long-enough-secret"}, format="json").status_code
        == 200
    )
    strategy.refresh_from_db()
    assert strategy.check_passphrase("long-enough-secret")
    assert control_api.patch("/api/strategies/parity/", {"passphrase": ""}, format="json").status_code == 200
    strategy.refresh_from_db()
    assert strategy.passphrase_hash == ""


def test_settings_both_accept_are_saved_through_the_api(control_api, strategy):
    changes = {"leverage": 10, "sizing_mode": "fixed_quote", "size_value": "100", "order_type": "limit"}
    assert not form_errors(strategy, changes)
    response = control_api.patch("/api/strategies/parity/", changes, format="json")
    assert response.status_code == 200, response.content
    strategy.refresh_from_db()
    assert (strategy.leverage, strategy.size_value) == (10, Decimal("100"))


def test_the_api_says_why_a_strategy_is_blocked_with_the_one_halt_rule(control_api, strategy):
    from strategies.services import account_halt, global_halt

    body = control_api.get("/api/strategies/parity/").json()
    assert (body["trading_state"], body["blocked_because"]) == ("paper", "")
    account_halt(account=strategy.account, actor="test", reason="x")
    body = control_api.get("/api/strategies/parity/").json()
    assert body["trading_state"] == "halted"
    assert body["blocked_because"] == f"the kill switch of account {strategy.account.label} is engaged"
    global_halt(actor="test", reason="x")
    assert control_api.get("/api/strategies/parity/").json()["blocked_because"] == "the global kill switch is engaged"
