"""Which position and margin modes an exchange account may be set to: hedge mode and isolated
margin only where the gateway maps them (Bitget and OKX perpetuals); one-way and cross stay the
defaults."""

import pytest
from django.core.exceptions import ValidationError

from execution.models import ExchangeAccount

pytestmark = pytest.mark.django_db


def account(**fields) -> ExchangeAccount:
    fields.setdefault("label", "a")
    return ExchangeAccount(**fields)


def test_one_way_and_cross_are_the_defaults():
    fresh = account()
    assert (fresh.position_mode, fresh.margin_mode) == ("one_way", "cross")
    fresh.full_clean()


@pytest.mark.parametrize("exchange", ["bitget", "okx"])
def test_hedge_mode_and_isolated_margin_are_allowed_on_bitget_and_okx_perpetuals(exchange):
    account(exchange=exchange, position_mode="hedge", margin_mode="isolated").full_clean()


@pytest.mark.parametrize("exchange", ["bybit", "binanceusdm"])
def test_hedge_mode_is_refused_where_the_gateway_does_not_map_it(exchange):
    with pytest.raises(ValidationError) as info:
        account(exchange=exchange, position_mode="hedge").full_clean()
    assert "Bitget and OKX only" in str(info.value.message_dict["position_mode"])


@pytest.mark.parametrize("exchange", ["bybit", "binanceusdm"])
def test_isolated_margin_is_refused_where_it_is_not_sent_with_the_order(exchange):
    with pytest.raises(ValidationError) as info:
        account(exchange=exchange, margin_mode="isolated").full_clean()
    assert "set the margin mode at the exchange" in str(info.value.message_dict["margin_mode"])


@pytest.mark.parametrize(("field", "value"), [("position_mode", "hedge"), ("margin_mode", "isolated")])
def test_spot_accounts_stay_one_way_and_cross(field, value):
    with pytest.raises(ValidationError) as info:
        account(exchange="okx", market_type="spot", **{field: value}).full_clean()
    assert "perpetuals only" in str(info.value.message_dict[field])
