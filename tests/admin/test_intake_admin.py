"""The first-cut admin: signals are listed and inspectable (redacted raw body, content type),
strategies are created and edited with a write-only passphrase, refusals are visible."""

import pytest
from django.conf import settings

from signals.models import Signal, WebhookRejection
from strategies.models import AuditEntry, Strategy
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def test_signal_list_shows_status_reason_and_filters(admin_client, post_alert):
    StrategyFactory(strategy_id="demo")
    post_alert()
    post_alert(price="{{close}}")

    page = admin_client.get("/admin/signals/signal/", {"status__exact": "rejected"}).content.decode()
    assert "unreplaced TradingView placeholder" in page
    assert admin_client.get("/admin/signals/signal/", {"q": "BTCUSDT"}).status_code == 200


def test_signal_detail_shows_the_redacted_raw_body_read_only(admin_client, post_alert):
    StrategyFactory(strategy_id="demo")
    signal = Signal.objects.get(pk=post_alert(content_type="text/plain").json()["signal_id"])

    page = admin_client.get(f"/admin/signals/signal/{signal.pk}/change/").content.decode()
    assert "[redacted]" in page
    assert "text/plain" in page
    assert settings.WEBHOOK_PASSPHRASE not in page
    assert 'name="_save"' not in page  # nothing to edit
    assert admin_client.get("/admin/signals/signal/add/").status_code == 403


def test_strategy_is_created_with_a_write_only_passphrase(admin_client):
    data = {
        "strategy_id": "btc-trend",
        "name": "BTC trend",
        "enabled": "on",
        "sizing_mode": "signal",
        "order_type": "market",
        "limit_offset_bps": "0",
        "max_slippage_bps": "50",
        "limit_timeout_seconds": "60",
        "on_opposite": "reverse",
        "allowed_actions": '["buy", "sell", "close_all"]',
        "dedup_window_seconds": "60",
        "new_passphrase": "btc-trend-secret-1",
    }
    response = admin_client.post("/admin/strategies/strategy/add/", data)
    assert response.status_code == 302, response.content.decode()[:2000]

    strategy = Strategy.objects.get(strategy_id="btc-trend")
    assert strategy.check_passphrase("btc-trend-secret-1")
    assert "btc-trend-secret-1" not in strategy.passphrase_hash
    page = admin_client.get(f"/admin/strategies/strategy/{strategy.pk}/change/").content.decode()
    assert "btc-trend-secret-1" not in page and strategy.passphrase_hash not in page

    data.update(new_passphrase="", dedup_window_seconds="30")
    admin_client.post(f"/admin/strategies/strategy/{strategy.pk}/change/", data)
    strategy.refresh_from_db()
    assert strategy.dedup_window_seconds == 30
    assert strategy.check_passphrase("btc-trend-secret-1")  # empty field keeps it
    assert AuditEntry.objects.filter(strategy=strategy, field="dedup_window_seconds", new_value="30").exists()


def test_webhook_rejections_are_listed_read_only(admin_client, post_alert):
    StrategyFactory(strategy_id="demo")
    post_alert(passphrase="guess")

    page = admin_client.get("/admin/signals/webhookrejection/").content.decode()
    assert "bad_passphrase" in page
    row = WebhookRejection.objects.get()
    assert admin_client.post(f"/admin/signals/webhookrejection/{row.pk}/delete/").status_code == 403
