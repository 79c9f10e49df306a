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
