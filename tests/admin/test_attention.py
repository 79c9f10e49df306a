"""The dashboard's attention block lists every unhealthy thing — drift found by reconcile,
refused alerts by reason (today and since the operator last looked), failing notification
channels — and never says "All clear" while one is present."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from execution.models import Position
from signals.models import Signal
from strategies.attention import CHECKS, Attention, attention_check
from tests.conftest import wait_for
from tests.execution.conftest import KEY, emu, make_account  # noqa: F401  (the emulator fixture)
from tests.factories import StrategyFactory
from tests.ops.conftest import BOT_TOKEN, channel_env, fake_channels  # noqa: F401  (the stand-in Bot API)

pytestmark = pytest.mark.django_db


def attention(admin_client) -> dict[str, list[Attention]]:
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    found: dict[str, list[Attention]] = {}
    for item in response.context["attention"]:
        found.setdefault(item.key, []).append(item)
    html = response.content.decode()
    assert ("All clear" in html) == (not found), found
    return found


def test_a_quiet_installation_is_all_clear(admin_client, db):
    from execution.tasks import _heartbeat_write
    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.redisconn import key, redis_client

    _heartbeat_write()  # what a warm worker writes every few seconds
    try:
        assert attention(admin_client) == {}
    finally:
        redis_client().delete(key(HEARTBEAT_KEY))


def test_position_drift_found_by_manage_py_reconcile_is_listed_until_reconciled_away(admin_client, emu):  # noqa: F811
    account = make_account(emu)
    emu.set_position("BTCUSDT", "0.03", "65000", account=KEY, venue="bybit")
    Position.objects.create(account=account, symbol="BTC/USDT:USDT", qty=Decimal("0"))
    with pytest.raises(SystemExit):
        call_command("reconcile")

    drift = attention(admin_client)["drift"]
    assert f"Drift on account {account.label}" in drift[0].title
    assert "BTC/USDT:USDT" in drift[0].detail and "ours 0" in drift[0].detail and "exchange 0.03" in drift[0].detail
    assert drift[0].level == "error"

    call_command("reconcile", "--fix")
    assert "drift" not in attention(admin_client)


def test_the_periodic_reconcile_task_records_drift_for_the_dashboard(admin_client, emu):  # noqa: F811
    from execution.tasks import reconcile

    account = make_account(emu)
    emu.set_position("BTCUSDT", "0.03", "65000", account=KEY, venue="bybit")
    assert reconcile() == 1
    assert f"Drift on account {account.label}" in attention(admin_client)["drift"][0].title


def test_drift_of_an_account_removed_since_is_not_listed(admin_client, db):
    from execution.reconcile import AccountReport, Difference, reports_record

    reports_record([AccountReport(account="gone", differences=[Difference("position", "BTC/USDT:USDT", "0", "1")])])
    assert "drift" not in attention(admin_client)


def test_refused_alerts_are_listed_by_reason_today_and_since_last_look(admin_client, client, settings, db):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = False
    StrategyFactory(strategy_id="demo")
    body = {"passphrase": "wrong-passphrase", "action": "buy", "ticker": "BTCUSDT.P", "strategy_id": "demo"}
    for _ in range(2):
        assert client.post("/tv-webhook", json.dumps(body), content_type="text/plain").status_code == 401
    bad_price = dict(body, passphrase=settings.WEBHOOK_PASSPHRASE, price="abc", volume="0.01", exchange="BYBIT")
    assert client.post("/tv-webhook", json.dumps(bad_price), content_type="text/plain").status_code == 400

    found = attention(admin_client)
    wrong = found["refused-bad_passphrase"][0]
    assert wrong.title == "Alerts refused: wrong passphrase"
    assert wrong.detail.startswith("2 today, 2 in the last 7 days") and wrong.level == "warning"
    assert "WEBHOOK_PASSPHRASE" in wrong.detail
    assert "reason=bad_passphrase" in wrong.url
    invalid = found["refused-signal"][0]
    assert "invalid alert (price)" in invalid.title and invalid.detail.startswith("1 today")

    # The operator looks: still listed (it happened today), but nothing new since.
    admin_client.post(reverse("admin:attention_seen", args=["refusals"]))
    wrong = attention(admin_client)["refused-bad_passphrase"][0]
    assert wrong.detail.startswith("2 today, 0 since you last looked") and wrong.level == "info"
    assert not wrong.seen_key

    # One more wrong passphrase: counted exactly, although it lands in the same daily row.
    assert client.post("/tv-webhook", json.dumps(body), content_type="text/plain").status_code == 401
    wrong = attention(admin_client)["refused-bad_passphrase"][0]
    assert wrong.detail.startswith("3 today, 1 since you last looked") and wrong.level == "warning"


def test_seen_is_per_operator_and_only_by_post(admin_client, client, django_user_model, settings, db):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = False
    body = {"passphrase": "wrong-passphrase", "action": "buy", "ticker": "BTCUSDT.P", "strategy_id": "x"}
    client.post("/tv-webhook", json.dumps(body), content_type="text/plain")
    assert admin_client.get(reverse("admin:attention_seen", args=["refusals"])).status_code == 405
    assert admin_client.post(reverse("admin:attention_seen", args=["bogus"])).status_code == 404
    admin_client.post(reverse("admin:attention_seen", args=["refusals"]))
    django_user_model.objects.create_superuser("other", "", "other-password-1")
    client.force_login(django_user_model.objects.get(username="other"))
    other = attention(client)["refused-bad_passphrase"][0]
    assert "1 in the last 7 days" in other.detail and other.level == "warning"


def test_refusals_of_yesterday_are_not_today_but_still_unseen(admin_client, db):
    from signals.services import webhook_rejection_record

    webhook_rejection_record(source="203.0.113.9", reason="bad_passphrase", at=timezone.now() - timedelta(days=1))
    wrong = attention(admin_client)["refused-bad_passphrase"][0]
    assert wrong.detail.startswith("0 today, 1 in the last 7 days")


@pytest.mark.slow
def test_failing_notification_channel_is_listed_until_a_message_gets_through(
    admin_client,
    settings,
    worker_factory,
    fake_channels,  # noqa: F811
):
    from tvtrader.ops.notifications import notification_send

    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    fake_channels.plan.append((400, {"ok": False, "description": "Bad Request: chat not found"}, 0.0))
    worker_factory(queues="notifications", env=channel_env(fake_channels, DISCORD_WEBHOOK_URL=""))
    notification_send(event="test", text="hello")
    wait_for(lambda: "notify-failing" in attention(admin_client), message="the failure on the dashboard")

    failing = attention(admin_client)["notify-failing"][0]
    assert failing.title == "Notifications failing: Telegram (global, from the environment)"
    assert "chat not found" in failing.detail and BOT_TOKEN not in failing.detail

    notification_send(event="test", text="hello again")
    wait_for(lambda: "notify-failing" not in attention(admin_client), message="the success to clear it")


@pytest.mark.slow
def test_a_failing_strategy_target_links_to_it_until_switched_off(
    admin_client,
    settings,
    worker_factory,
    fake_channels,  # noqa: F811
):
    from tvtrader.ops.models import NotificationTarget
    from tvtrader.ops.notifications import notification_send

    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, ""
    strategy = StrategyFactory(strategy_id="trend-btc")
    target = NotificationTarget.objects.create(strategy=strategy, channel="telegram", telegram_chat_id="-42")
    fake_channels.plan.append((403, {"ok": False, "description": "Forbidden: bot was kicked"}, 0.0))
    worker_factory(queues="notifications", env=channel_env(fake_channels, TELEGRAM_CHAT_ID="", DISCORD_WEBHOOK_URL=""))
    notification_send(event="test", text="hi", strategy=strategy)
    failing = wait_for(lambda: attention(admin_client).get("notify-failing"), message="the failure")[0]
    assert "trend-btc → Telegram" in failing.title and f"/{target.pk}/change/" in failing.url
    assert "bot was kicked" in failing.detail

    target.enabled = False
    target.save()
    assert "notify-failing" not in attention(admin_client)


def test_a_check_that_crashes_is_itself_listed(admin_client, db):
    @attention_check("broken_for_test")
    def broken(ctx):
        raise RuntimeError("boom")
        yield  # pragma: no cover

    try:
        items = attention(admin_client)["check-broken_for_test"]
    finally:
        CHECKS.pop("broken_for_test")
    assert items[0].level == "error" and "boom" in items[0].detail


def test_another_app_adds_a_check_without_touching_the_dashboard(admin_client, db):
    @attention_check("unprotected_positions_for_test")
    def unprotected(ctx):
        yield Attention("unprotected", "error", "1 position without a stop", "BTC/USDT:USDT on demo")

    try:
        found = attention(admin_client)
    finally:
        CHECKS.pop("unprotected_positions_for_test")
    assert found["unprotected"][0].title == "1 position without a stop"


def test_rejected_signal_counts_come_from_the_signal_table(admin_client, strategy):
    Signal.objects.create(
        strategy=strategy,
        strategy_key="trend-btc",
        status=Signal.Status.REJECTED,
        reason="not JSON: Expecting value",
        received_at=timezone.now(),
        dedup_key="x1",
    )
    assert attention(admin_client)["refused-signal"][0].title == "Alerts refused: not valid JSON"
