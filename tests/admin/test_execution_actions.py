"""Admin actions that call the engine's operator verbs (strategy_cancel_open_orders, strategy_flatten,
signal_replay_on_paper, account_test_connection in execution/services.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from execution.models import Order, Position
from signals.models import Signal
from tests.admin.conftest import executed_signal

pytestmark = pytest.mark.django_db


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_engaging_with_cancel_cancels_the_strategys_open_orders(admin_client, strategy):
    signal = executed_signal(strategy)
    Order.objects.filter(signal=signal).update(status=Order.Status.OPEN, filled_qty=0, order_type="limit")
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"})
    response = admin_client.post(url, {"ids": str(strategy.pk), "confirm": "yes", "cancel_orders": "1"})
    texts = _messages(response)
    assert not any("Could not" in t for t in texts), texts
    assert "Cancel requested: 1 open order(s) cancelled." in texts
    assert Order.objects.get(signal=signal).status == Order.Status.CANCELLED
    strategy.refresh_from_db()
    assert strategy.halted


def test_engaging_with_flatten_sends_a_close_all_through_the_chain(admin_client, strategy):
    Position.objects.create(
        account=strategy.account, strategy=strategy, symbol="BTC/USDT:USDT", qty=Decimal("0.01"), avg_price=65000
    )
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"})
    response = admin_client.post(url, {"ids": str(strategy.pk), "confirm": "yes", "flatten": "1"})
    texts = _messages(response)
    assert not any("Could not" in t for t in texts), texts
    assert Signal.objects.filter(strategy=strategy, action="close_all").exists()


def test_replay_on_paper_shows_what_the_signal_would_do_now(admin_client, strategy):
    signal = executed_signal(strategy)
    url = reverse("admin:signals_signal_replay", args=[signal.pk])
    assert "Replay on paper" in admin_client.get(url).content.decode()
    response = admin_client.post(url)
    assert response.context["error"] == ""
    result = response.context["result"]
    assert isinstance(result, dict) and result.get("legs"), result
    assert Order.objects.filter(signal=signal).count() == 1  # nothing new placed


def test_test_connection_on_a_paper_account_reports_ok(admin_client, strategy):
    url = reverse("admin:execution_exchangeaccount_test_connection", args=[strategy.account.pk])
    response = admin_client.post(url)
    texts = _messages(response)
    assert any("connection OK" in t for t in texts), texts
