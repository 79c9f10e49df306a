"""Protective orders where a trader looks: the signal page, orders, positions, the API and
the dashboard."""

from decimal import Decimal

import pytest
from django.urls import reverse

from execution.models import Order, Position
from execution.services import signal_execute
from tests.api.conftest import client_with
from tests.factories import SignalFactory, StrategyFactory
from tvtrader.api.services import api_token_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def protected():
    strategy = StrategyFactory(stop_loss_percent=Decimal("2"), take_profit_percent=Decimal("4"))
    signal = SignalFactory(strategy=strategy, action="buy", price=Decimal("65000"), volume=Decimal("0.01"))
    signal_execute(signal_id=signal.pk)
    return strategy, signal


def test_the_signal_page_lists_the_protective_legs_under_the_timeline(admin_client, protected):
    _, signal = protected
    page = admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).content.decode()
    assert 'id="tv-protection"' in page
    stop = Order.objects.get(signal=signal, protection="stop_loss")
    assert f"Stop-loss @ {stop.trigger_price.normalize():f}" in page
    assert "after the fill" in page


def test_positions_show_their_stop_and_take_levels(admin_client, protected):
    strategy, signal = protected
    page = admin_client.get(reverse("admin:execution_position_changelist")).content.decode()
    stop = Order.objects.get(signal=signal, protection="stop_loss")
    take = Order.objects.get(signal=signal, protection="take_profit")
    assert f"Stop-loss @ {stop.trigger_price.normalize():f}" in page
    assert f"Take-profit @ {take.trigger_price.normalize():f}" in page


def test_the_api_exposes_protective_orders_and_each_positions_levels(protected, django_user_model):
    strategy, signal = protected
    user = django_user_model.objects.create_user("bot", password="x" * 20)
    api = client_with(api_token_create(user=user, scope="read", name="t")[1])
    positions = api.get("/api/positions/").json()
    rows = positions["results"] if isinstance(positions, dict) else positions
    row = next(p for p in rows if p["strategy"] == strategy.strategy_id)
    kinds = {g["kind"]: g for g in row["protection"]}
    assert set(kinds) == {"stop_loss", "take_profit"}
    assert kinds["stop_loss"]["status"] == "open" and Decimal(kinds["stop_loss"]["qty"]) == Decimal("0.01")
    stop = Order.objects.get(signal=signal, protection="stop_loss")
    order = api.get(f"/api/orders/{stop.pk}/").json()
    assert order["protection"] == "stop_loss" and Decimal(order["trigger_price"]) == stop.trigger_price
    assert order["protects"] == stop.protects_id
    strat = api.get(f"/api/strategies/{strategy.strategy_id}/").json()
    assert Decimal(strat["stop_loss_percent"]) == Decimal("2") and strat["unprotected_action"] == "flatten"


def test_the_dashboard_lists_a_refused_protective_order(admin_client, protected):
    from django.utils import timezone

    _, signal = protected
    Order.objects.filter(signal=signal, protection="take_profit").update(
        status=Order.Status.REJECTED, reason="Order would immediately trigger.", closed_at=timezone.now()
    )
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "protective order(s) refused" in page
    assert "would immediately trigger" in page
    assert Position.objects.filter(strategy=signal.strategy).exists()
