"""Telegram and Discord notifications: delivered from their own queue by a real worker to a
local stand-in for both APIs; retried, rate-limited, and never in trading's way."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import redis

from signals.models import Signal
from strategies.services import global_halt, strategy_halt
from tests.conftest import wait_for
from tests.factories import OrderFactory, SignalFactory, StrategyFactory
from tvtrader.ops.models import NotificationTarget
from tvtrader.ops.notifications import DeliveryError, deliver_now, destinations, notification_send, signal_outcome_text
from tvtrader.redisconn import key

from .conftest import BOT_TOKEN, channel_env

pytestmark = pytest.mark.slow


def test_kill_switch_change_reaches_telegram_and_discord(worker_factory, fake_channels, channels_configured):
    worker_factory(queues="notifications", env=channel_env(fake_channels))
    strategy = StrategyFactory(strategy_id="trend")
    assert strategy_halt(strategy=strategy, actor="alice", reason="news spike")

    wait_for(lambda: len(fake_channels.messages()) == 2, message="both channels to receive the message")
    telegram = fake_channels.messages("telegram")[0]
    discord = fake_channels.messages("discord")[0]
    assert telegram["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    assert telegram["body"]["chat_id"] == "-1001"
    for text in (telegram["body"]["text"], discord["body"]["content"]):
        assert "kill switch ENGAGED" in text and "strategy trend" in text
        assert "alice" in text and "news spike" in text
    assert discord["path"] == "/api/webhooks/42/discord-secret"


def test_failing_channel_is_retried_with_backoff_and_the_bot_token_never_logged(
    worker_factory, fake_channels, settings
):
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    fake_channels.plan = [(502, {"ok": False}, 0), (500, {"ok": False}, 0)]
    worker = worker_factory(queues="notifications", env=channel_env(fake_channels, DISCORD_WEBHOOK_URL=""))
    global_halt(actor="bob", reason="maintenance")

    wait_for(lambda: len(fake_channels.messages()) == 3, timeout=30, message="two failures then a delivery")
    attempts = fake_channels.messages()
    assert [a["status"] for a in attempts] == [502, 500, 200]
    assert attempts[2]["at"] - attempts[1]["at"] > attempts[1]["at"] - attempts[0]["at"] > 1.5  # backing off
    assert BOT_TOKEN not in worker.logged("notification_retry", "notification_sent")


def test_rate_limit_reply_is_honoured(worker_factory, fake_channels, settings):
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    fake_channels.plan = [(429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 2}}, 0)]
    worker_factory(queues="notifications", env=channel_env(fake_channels, DISCORD_WEBHOOK_URL=""))
    notification_send(event="silence", text="hello")

    wait_for(lambda: len(fake_channels.messages()) == 2, timeout=20, message="the retry after the 429")
    first, second = fake_channels.messages()
    assert second["at"] - first["at"] >= 2
    assert second["body"]["text"] == "hello"


def test_messages_per_channel_are_rate_limited_across_workers(worker_factory, fake_channels, settings):
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    env = channel_env(fake_channels, DISCORD_WEBHOOK_URL="", NOTIFY_RATE_PER_MINUTE=3)
    workers = [worker_factory(queues="notifications", env=env) for _ in range(2)]
    if time.time() % 60 > 45:  # the allowance is per clock minute: don't straddle one
        time.sleep(61 - time.time() % 60)
    for n in range(6):
        notification_send(event="silence", text=f"message {n}")

    wait_for(lambda: len(fake_channels.messages()) == 3, message="the first three messages")
    time.sleep(3)
    assert len(fake_channels.messages()) == 3, [w.log()[-3000:] for w in workers]  # the others wait their turn


def test_a_hung_channel_does_not_hold_up_other_queues(worker_factory, fake_channels, settings):
    """The launcher's worker consumes every queue; notifications stuck on a channel that
    takes 5 s per request must not delay the orders/default queues."""
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    fake_channels.plan = [(200, None, 5.0)] * 8
    worker_factory(queues="orders,default,notifications", env=channel_env(fake_channels, DISCORD_WEBHOOK_URL=""))
    started = time.perf_counter()
    for n in range(8):
        notification_send(event="silence", text=f"slow {n}")
    assert time.perf_counter() - started < 0.5  # the caller never waits on a channel

    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.celery import app

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(key(HEARTBEAT_KEY))
    time.sleep(0.5)  # the slow deliveries are now in flight
    sent_at = time.time()
    app.send_task("execution.heartbeat", queue="default")
    beat = wait_for(lambda: client.get(key(HEARTBEAT_KEY)), timeout=5, message="the default-queue task")
    assert json.loads(beat)["at"] - sent_at < 2.0


def test_notifications_go_to_their_own_queue(transactional_db, settings):
    settings.DISCORD_WEBHOOK_URL = "http://127.0.0.1:9/none"
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(*(key(q) for q in ("notifications", "orders", "default")))
    assert notification_send(event="silence", text="x") == 1
    assert client.llen(key("notifications")) == 1
    assert client.llen(key("orders")) == client.llen(key("default")) == 0


def test_a_dead_channel_raises_a_delivery_error_without_the_secret(settings):
    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    settings.TELEGRAM_API_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    with pytest.raises(DeliveryError) as info:
        deliver_now({"channel": "telegram", "key": "global"}, "hi")
    assert BOT_TOKEN not in str(info.value) and info.value.retry_after is not None


@pytest.mark.django_db
def test_strategy_targets_get_only_the_events_they_asked_for(settings):
    settings.TELEGRAM_BOT_TOKEN = settings.TELEGRAM_CHAT_ID = settings.DISCORD_WEBHOOK_URL = ""
    strategy = StrategyFactory()
    target = NotificationTarget(strategy=strategy, channel="discord", events=["kill_switch"])
    target.set_discord_webhook_url("http://127.0.0.1:9/api/webhooks/7/strategy-secret")
    target.save()
    assert "strategy-secret" not in target.discord_webhook_url_enc
    assert destinations(event="kill_switch", strategy=strategy) == [
        {"channel": "discord", "key": f"target:{target.pk}"}
    ]
    assert destinations(event="signal_executed", strategy=strategy) == []
    assert destinations(event="kill_switch", strategy=StrategyFactory()) == []


@pytest.mark.django_db
def test_executed_signal_message_has_prices_slippage_and_latency():
    signal = SignalFactory(status=Signal.Status.EXECUTED, price=Decimal("65000"))
    signal.sent_at = signal.received_at + timedelta(milliseconds=42)
    signal.filled_at = signal.received_at + timedelta(milliseconds=180)
    OrderFactory(
        signal=signal,
        leg=0,
        status="filled",
        filled_qty=Decimal("0.01"),
        avg_price=Decimal("65013"),
        slippage_bps=Decimal("2.00"),
    )
    event, text = signal_outcome_text(signal)
    assert event == "signal_executed"
    for part in (signal.strategy_key, "buy BTCUSDT.P", "signal price 65000", "fill 65013", "slippage 2 bps"):
        assert part in text
    assert "alert→order 42 ms" in text and "alert→fill 180 ms" in text

    signal.status, signal.reason = Signal.Status.FAILED, "insufficient balance"
    event, text = signal_outcome_text(signal)
    assert event == "signal_failed" and "insufficient balance" in text

    signal.status, signal.reason = Signal.Status.SKIPPED, "no long position to close"
    event, text = signal_outcome_text(signal)
    assert event == "signal_executed" and "nothing to do" in text and "no long position" in text


def test_a_rejected_or_blocked_alert_is_notified_with_its_reason(
    worker_factory, fake_channels, channels_configured, post_alert
):
    worker_factory(queues="notifications", env=channel_env(fake_channels))
    strategy = StrategyFactory(strategy_id="demo")
    assert post_alert(price="{{close}}").status_code == 400
    strategy_halt(strategy=strategy, actor="alice", reason="CPI")
    assert post_alert(bar_time="2026-11-24T05:00:00Z").json()["status"] == "blocked"
    wait_for(lambda: len(fake_channels.messages("telegram")) >= 3, message="three telegram messages")
    texts = [m["body"]["text"] for m in fake_channels.messages("telegram")]
    assert any("rejected" in t and "{{close}}" in t for t in texts)
    assert any("blocked" in t and "kill switch" in t for t in texts)
    assert not any("[redacted]" in t or "passphrase" in t.lower() for t in texts)


# --- Retries: NOTIFY_MAX_RETRIES, not Celery's default of 3 ----------------------------------


def discord_target(strategy, fake, name: str) -> NotificationTarget:
    target = NotificationTarget(strategy=strategy, channel="discord")
    target.set_discord_webhook_url(f"{fake.url}/api/webhooks/{name}/target-secret-{name}")
    target.save()
    return target


def test_a_failing_channel_is_tried_notify_max_retries_times_more_then_given_up_and_shown(
    worker_factory, fake_channels, settings, admin_page
):
    """Default NOTIFY_MAX_RETRIES (6): 7 tries in all, then one `notification_failed` line (no
    Celery MaxRetriesExceededError), and the target's last error says so in the admin."""
    settings.TELEGRAM_BOT_TOKEN = settings.TELEGRAM_CHAT_ID = settings.DISCORD_WEBHOOK_URL = ""
    assert settings.NOTIFY_MAX_RETRIES == 6
    fake_channels.plan = [(502, {"message": "bad gateway"}, 0)] * 20
    env = channel_env(fake_channels, DISCORD_WEBHOOK_URL="", TELEGRAM_CHAT_ID="", NOTIFY_RETRY_BACKOFF_MAX_SECONDS=0.5)
    worker = worker_factory(queues="notifications", env=env)
    strategy = StrategyFactory(strategy_id="trend")
    target = discord_target(strategy, fake_channels, "7")
    assert notification_send(event="silence", text="hello", strategy=strategy) == 1

    log = worker.logged("event=notification_failed", timeout=60)
    assert len(fake_channels.messages()) == 7
    assert "MaxRetriesExceeded" not in log and "target-secret" not in log
    target.refresh_from_db()
    assert target.last_sent_at is None and target.last_error_at is not None
    assert target.last_error == "gave up after 7 tries: discord answered 502"
    page = admin_page("/admin/ops/notificationtarget/")
    assert "gave up after 7 tries: discord answered 502" in page and "target-secret" not in page


def test_waiting_for_the_per_minute_allowance_is_never_capped(worker_factory, fake_channels, settings):
    """A message that has already waited out five minutes' allowances (Celery retries=5, past
    Celery's default cap of 3) is still rescheduled for the next minute, not dropped."""
    from tvtrader.celery import app
    from tvtrader.ops.tasks import deliver

    settings.TELEGRAM_BOT_TOKEN, settings.TELEGRAM_CHAT_ID = BOT_TOKEN, "-1001"
    worker = worker_factory(
        queues="notifications", env=channel_env(fake_channels, DISCORD_WEBHOOK_URL="", NOTIFY_RATE_PER_MINUTE=1)
    )
    client = redis.Redis.from_url(settings.REDIS_URL)
    window = int(time.time() // 60)
    for w in (window, window + 1):  # this minute's allowance and the next one's are used up
        client.set(key("notify", "rl", "telegram:global", w), 5, ex=300)
    deliver.apply_async(
        args=[{"channel": "telegram", "key": "global"}, "waited long", {"event": "silence"}],
        queue="notifications",
        retries=5,
    )

    def rescheduled():
        if "MaxRetriesExceeded" in worker.log():
            raise AssertionError(worker.log()[-3000:])
        found = app.control.inspect(timeout=2).scheduled() or {}
        return any(
            "waited long" in str(entry["request"].get("args")) for entries in found.values() for entry in entries
        )

    wait_for(rescheduled, timeout=30, interval=0.5, message="the message rescheduled for the next minute")
    assert "event=notification_ratelimited" in worker.log()
    assert fake_channels.messages() == []


# --- The admin: test messages, Telegram without a bot, last delivery / last error -------------


@pytest.fixture
def admin_page(client, django_user_model):
    user = django_user_model.objects.create_superuser("ops-admin", "", "ops-admin-password-1")
    client.force_login(user)

    def _get(url: str) -> str:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        return response.content.decode()

    _get.client = client
    return _get


def test_send_a_test_message_on_two_targets_queues_exactly_two_and_shows_each_result(
    worker_factory, fake_channels, channels_configured, admin_page
):
    strategy = StrategyFactory(strategy_id="trend")
    ok = discord_target(strategy, fake_channels, "1")
    refused = NotificationTarget.objects.create(strategy=strategy, channel="telegram", telegram_chat_id="-404")
    discord_target(strategy, fake_channels, "3")  # not selected: gets nothing
    broker = redis.Redis.from_url(settings_broker_url())
    broker.delete(key("notifications"))

    response = admin_page.client.post(
        "/admin/ops/notificationtarget/",
        {"action": "send_test", "_selected_action": [ok.pk, refused.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Queued 2 test message(s)" in response.content.decode()
    assert broker.llen(key("notifications")) == 2  # not one per target per strategy target, nor the globals

    fake_channels.channel_plan["telegram"] = [(400, {"ok": False, "description": "Bad Request: chat not found"}, 0)]
    worker_factory(queues="notifications", env=channel_env(fake_channels))
    wait_for(lambda: len(fake_channels.messages()) == 2, message="the two test messages")
    wait_for(
        lambda: all(
            t.last_sent_at or t.last_error_at for t in NotificationTarget.objects.filter(pk__in=[ok.pk, refused.pk])
        ),
        message="both results recorded",
    )
    paths = sorted(m["path"] for m in fake_channels.messages())
    assert paths == sorted(["/api/webhooks/1/target-secret-1", f"/bot{BOT_TOKEN}/sendMessage"])
    ok.refresh_from_db()
    refused.refresh_from_db()
    assert ok.last_sent_at and not ok.last_error
    assert refused.last_sent_at is None
    assert refused.last_error == "telegram refused the message: 400 Bad Request: chat not found"
    page = admin_page("/admin/ops/notificationtarget/")
    assert "Bad Request: chat not found" in page
    assert BOT_TOKEN not in page and "target-secret" not in page


def settings_broker_url() -> str:
    from django.conf import settings

    return settings.CELERY_BROKER_URL


@pytest.mark.django_db
def test_a_telegram_target_needs_the_bot_token_configured(settings, admin_page):
    strategy = StrategyFactory()
    form = {
        "strategy": strategy.pk,
        "channel": "telegram",
        "telegram_chat_id": "-1001",
        "events": "[]",
        "enabled": "on",
    }
    settings.TELEGRAM_BOT_TOKEN = ""
    response = admin_page.client.post("/admin/ops/notificationtarget/add/", form)
    assert response.status_code == 200
    assert "TELEGRAM_BOT_TOKEN is not set" in response.content.decode()
    assert not NotificationTarget.objects.exists()

    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    response = admin_page.client.post("/admin/ops/notificationtarget/add/", form)
    assert response.status_code == 302
    assert NotificationTarget.objects.get().telegram_chat_id == "-1001"


def test_global_channels_show_their_last_delivery_and_last_error_in_the_admin(
    worker_factory, fake_channels, channels_configured, admin_page
):
    from tvtrader.ops.notifications import global_channels_status

    client = redis.Redis.from_url(settings_redis_url())
    client.delete(key("notify", "status", "telegram"), key("notify", "status", "discord"))
    fake_channels.channel_plan["discord"] = [(404, {"message": "Unknown Webhook"}, 0)]
    worker_factory(queues="notifications", env=channel_env(fake_channels))
    assert "Global channels" in admin_page("/admin/ops/notificationtarget/")
    assert notification_send(event="silence", text="hello") == 2

    rows = wait_for(
        lambda: (r := global_channels_status()) and all(x["last_sent_at"] or x["last_error_at"] for x in r) and r,
        message="both global channels' results",
    )
    by_channel = {r["channel"]: r for r in rows}
    assert by_channel["telegram"]["last_sent_at"] and not by_channel["telegram"]["last_error"]
    assert by_channel["discord"]["last_error"] == "discord refused the message: 404 Unknown Webhook"
    page = admin_page("/admin/ops/notificationtarget/")
    assert "discord refused the message: 404 Unknown Webhook" in page
    assert BOT_TOKEN not in page and "discord-secret" not in page


def settings_redis_url() -> str:
    from django.conf import settings

    return settings.REDIS_URL
