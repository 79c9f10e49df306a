"""Sizing preview: what an alert at a price would send, on the strategy page and in the API,
planned by the same planner as a real run — and a real run then sends exactly that."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from execution.models import Order, PaperOrder
from execution.services import signal_execute, strategy_sizing_preview
from tests.api.conftest import client_with
from tests.factories import SignalFactory, StrategyFactory
from tvtrader.api.services import api_token_create

pytestmark = pytest.mark.django_db


def _strategy(**fields):
    fields.setdefault("sizing_mode", "fixed_quote")
    fields.setdefault("size_value", Decimal("1000"))
    return StrategyFactory(strategy_id="demo", **fields)


def test_preview_states_quantity_notional_and_share_of_equity_and_a_run_sends_exactly_that():
    strategy = _strategy()
    preview = strategy_sizing_preview(strategy=strategy, action="buy", price=Decimal("65000"))
    assert preview["ok"], preview
    [sub] = preview["subscriptions"]
    [leg] = sub["legs"]
    # 1,000 USDT at 65,000 is 0.01538 BTC, rounded down to the paper market's 0.001 step.
    assert (leg["qty"], leg["notional"], leg["percent_of_equity"]) == ("0.015", "975.00", "9.8")
    assert sub["text"] == f"{strategy.account.label}: would send buy 0.015 BTC ≈ 975.00 USDT, 9.8 % of equity"
    assert not PaperOrder.objects.exists()  # nothing placed

    signal = SignalFactory(strategy=strategy, action="buy", price=Decimal("65000"))
    signal_execute(signal_id=signal.pk)
    assert Order.objects.get(signal=signal).requested_qty == Decimal(leg["qty"])


def test_preview_of_a_reversal_shows_the_close_then_the_open_from_current_positions():
    strategy = _strategy()
    signal_execute(signal_id=SignalFactory(strategy=strategy, action="buy", price=Decimal("65000")).pk)
    preview = strategy_sizing_preview(strategy=strategy, action="sell", price=Decimal("65000"))
    legs = preview["subscriptions"][0]["legs"]
    assert [(leg["side"], leg["purpose"], leg["qty"]) for leg in legs] == [
        ("sell", "close", "0.015"),
        ("sell", "open", "0.015"),
    ]


def test_preview_explains_what_a_run_would_refuse():
    strategy = _strategy(size_value=Decimal("2"))  # 2 USDT: below the 5 USDT minimum order
    preview = strategy_sizing_preview(strategy=strategy, action="buy", price=Decimal("65000"))
    assert not preview["ok"]
    assert "below the market minimum" in preview["subscriptions"][0]["reason"]


def test_api_sizing_preview_answers_read_tokens_and_refuses_bad_input():
    strategy = _strategy()
    user = get_user_model().objects.create_user("ops-bot", password="x" * 20)
    api = client_with(api_token_create(user=user, scope="read", name="grafana")[1])
    url = f"/api/strategies/{strategy.strategy_id}/sizing-preview/"
    answer = api.get(url, {"action": "buy", "price": "65000"})
    assert answer.status_code == 200, answer.content
    assert answer.json()["subscriptions"][0]["legs"][0]["qty"] == "0.015"
    for bad in ({"price": "-1"}, {"price": "abc"}, {"action": "moon", "price": "1"}, {"ticker": "x" * 100}):
        refused = api.get(url, bad)
        assert refused.status_code == 400, (bad, refused.content)
    assert not PaperOrder.objects.exists()


def test_strategy_page_shows_the_preview(admin_client):
    strategy = _strategy()
    page = admin_client.get(
        reverse("admin:strategies_strategy_change", args=[strategy.pk]),
        {"preview_action": "buy", "preview_price": "65000", "preview_ticker": "BTCUSDT.P"},
    )
    html = page.content.decode()
    assert "would send buy 0.015 BTC ≈ 975.00 USDT, 9.8 % of equity" in html
    bad = admin_client.get(reverse("admin:strategies_strategy_change", args=[strategy.pk]), {"preview_price": "x"})
    assert bad.status_code == 200 and "Enter a number" in bad.content.decode()


def test_preview_shows_each_subscription_with_its_own_size():
    from strategies.models import Subscription
    from strategies.subscriptions import subscriptions_sync
    from tests.factories import ExchangeAccountFactory

    strategy = _strategy(sizing_mode="signal", size_value=None)
    shadow = ExchangeAccountFactory(label="shadow")
    Subscription.objects.create(strategy=strategy, account=strategy.account)
    Subscription.objects.create(strategy=strategy, account=shadow, sizing_mode="multiplier", size_value=3)
    subscriptions_sync(strategy=strategy)
    preview = strategy_sizing_preview(strategy=strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    sizes = {sub["account"]: sub["legs"][0]["qty"] for sub in preview["subscriptions"]}
    assert sizes == {strategy.account.label: "0.01", "shadow": "0.03"}
    assert preview["subscriptions"][1]["text"] == "shadow: would send buy 0.03 BTC ≈ 1,950.00 USDT, 19.5 % of equity"
