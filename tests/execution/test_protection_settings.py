"""The one settings validator knows what each venue can place as protection."""

from decimal import Decimal

import pytest

from execution.models import ExchangeAccount
from strategies.validation import protection_effective, protection_errors, strategy_settings_errors
from tests.factories import ExchangeAccountFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def _strategy(exchange: str, mode: str = ExchangeAccount.Mode.TESTNET, **fields):
    account = ExchangeAccountFactory(exchange=exchange, mode=mode, market_type="linear")
    return StrategyFactory(account=account, **fields)


def test_a_bybit_default_trailing_stop_is_refused_with_the_reason():
    errors = strategy_settings_errors(_strategy("bybit", trailing_stop_percent=Decimal("1")))
    assert "trailing stop is not supported on bybit" in errors["trailing_stop_percent"]


def test_a_binance_trailing_stop_beyond_its_callback_rate_is_refused():
    errors = strategy_settings_errors(_strategy("binanceusdm", trailing_stop_percent=Decimal("12")))
    assert "0.1% to 10%" in errors["trailing_stop_percent"]
    assert "trailing_stop_percent" not in strategy_settings_errors(
        _strategy("binanceusdm", trailing_stop_percent=Decimal("1"))
    )


def test_paper_accounts_simulate_every_kind():
    strategy = _strategy("bybit", mode=ExchangeAccount.Mode.PAPER, trailing_stop_percent=Decimal("1"))
    assert not strategy_settings_errors(strategy)


def test_a_stop_of_100_percent_or_more_is_refused():
    errors = strategy_settings_errors(_strategy("bybit", stop_loss_percent=Decimal("100")))
    assert "below 100" in errors["stop_loss_percent"]


@pytest.mark.parametrize("venue", ["bitget", "okx"])
def test_venues_not_wired_refuse_any_protection(venue):
    errors = strategy_settings_errors(_strategy(venue, stop_loss_percent=Decimal("2")))
    assert f"not supported on {venue} yet" in errors["stop_loss_percent"]


def test_a_shorts_stop_must_be_above_and_its_take_profit_below_the_entry():
    spec = {"stop_loss": {"price": "64000"}, "take_profit": {"price": "66000"}}
    errors = protection_errors(spec, side="sell", reference=Decimal("65000"), venue="bybit")
    assert "short's stop-loss must be above" in errors["stop_loss"]
    assert "short's take-profit must be below" in errors["take_profit"]
    assert not protection_errors(spec, side="buy", reference=Decimal("65000"), venue="bybit")


def test_alert_levels_replace_defaults_only_when_allowed():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), take_profit_percent=Decimal("3"))
    alert = {"stop_loss": {"price": "60000"}}
    assert protection_effective(strategy, alert) == {
        "stop_loss": {"price": "60000"},
        "take_profit": {"percent": "3"},
    }
    strategy.alert_may_override_protection = False
    assert protection_effective(strategy, alert)["stop_loss"] == {"percent": "2"}
