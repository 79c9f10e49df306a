"""Telegram and Discord notifications, sent from their own Celery queue.

`notification_send` is the one entry point: it picks the destinations (the global channels
from the environment, plus the strategy's own targets), and after the caller's transaction
commits it queues one `notifications.deliver` task per destination on the `notifications`
queue. It never raises and never waits on a channel: a dead Telegram or Discord can delay
nothing but other notifications. Secrets (bot token, webhook URLs) never travel through the
broker and never reach a log line.
"""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from typing import Any

import requests
from django.conf import settings
from django.db import transaction

logger = logging.getLogger("tvtrader.notifications")

QUEUE = "notifications"
DISCORD_MAX = 2000
TELEGRAM_MAX = 4096


class DeliveryError(Exception):
    """A channel did not take the message. `retry_after` (seconds) when worth retrying."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# --- Destinations ------------------------------------------------------------------------


def destinations(*, event: str, strategy: Any = None) -> list[dict[str, Any]]:
    """Where a message goes, as small dicts safe to put on the broker (no secrets)."""
    found: list[dict[str, Any]] = []
    if settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID:
        found.append({"channel": "telegram", "key": "global"})
    if settings.DISCORD_WEBHOOK_URL:
        found.append({"channel": "discord", "key": "global"})
    if strategy is not None and getattr(strategy, "pk", None):
        from .models import NotificationTarget

        for target in NotificationTarget.objects.filter(strategy_id=strategy.pk, enabled=True):
            if target.wants(event):
                found.append({"channel": target.channel, "key": f"target:{target.pk}"})
    return found


def _resolve(dest: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(channel, secrets needed to send) for a destination, read at send time."""
    channel, key = dest["channel"], dest["key"]
    if key == "global":
        if channel == "telegram":
            return channel, {"token": settings.TELEGRAM_BOT_TOKEN, "chat_id": settings.TELEGRAM_CHAT_ID}
        return channel, {"url": settings.DISCORD_WEBHOOK_URL}
    from .models import NotificationTarget

    target = NotificationTarget.objects.filter(pk=int(key.split(":", 1)[1]), enabled=True).first()
    if target is None:
        raise DeliveryError("target removed or disabled")
    if channel == "telegram":
        return channel, {"token": settings.TELEGRAM_BOT_TOKEN, "chat_id": target.telegram_chat_id}
    return channel, {"url": target.discord_webhook_url()}


# --- Delivery health (for the dashboard) ----------------------------------------------------

DELIVERY_STATUS_KEY = "notify:failing"


def delivery_status_record(*, dest: dict[str, Any], ok: bool, error: str = "") -> None:
    """Remember a destination whose last delivery failed (cleared by its next success), so
    the dashboard can say so. Best effort: never raises."""
    from django.utils import timezone

    from tvtrader.redisconn import key, redis_client

    field = f"{dest.get('channel')}:{dest.get('key')}"
    try:
        if ok:
            redis_client().hdel(key(DELIVERY_STATUS_KEY), field)
        else:
            value = {"channel": dest.get("channel"), "key": dest.get("key"), "error": error[:300]}
            value["at"] = timezone.now().isoformat()
            redis_client().hset(key(DELIVERY_STATUS_KEY), field, json.dumps(value))
    except Exception as exc:
        logger.warning("event=notification_status_unavailable error=%s", type(exc).__name__)


def delivery_failures() -> list[dict[str, Any]]:
    """Destinations whose last delivery failed: [{channel, key, error, at}], oldest first."""
    from tvtrader.redisconn import key, redis_client

    raw = redis_client().hgetall(key(DELIVERY_STATUS_KEY))
    return sorted((json.loads(v) for v in raw.values()), key=lambda e: e["at"])


# --- Entry point ---------------------------------------------------------------------------

_broker_down_until = 0.0


def _queue_after_commit(*, dests: list[dict[str, Any]], text: str, meta: dict[str, Any]) -> None:
    """One `notifications.deliver` task per destination, once the caller's transaction commits."""
    event = meta["event"]

    def _queue() -> None:
        global _broker_down_until
        if time.monotonic() < _broker_down_until:
            logger.warning("event=notification_dropped reason=broker_down notify_event=%s", event)
            return
        from .tasks import deliver

        for dest in dests:
            try:
                deliver.apply_async(args=[dest, text[:TELEGRAM_MAX], meta], queue=QUEUE, retry=False)
            except Exception as exc:
                # The broker is down: trading's own outbox recovers orders, but a notification
                # is not worth blocking anyone for. Skip further attempts for a few seconds.
                _broker_down_until = time.monotonic() + 5.0
                logger.warning(
                    "event=notification_dropped reason=broker_error notify_event=%s error=%s",
                    event,
                    type(exc).__name__,
                )
                return

    try:
        transaction.on_commit(_queue)
    except Exception as exc:
        logger.warning("event=notification_failed stage=queue notify_event=%s error=%s", event, type(exc).__name__)


def notification_send(*, event: str, text: str, strategy: Any = None, data: dict | None = None) -> int:
    """Queue `text` to every destination for `event` once the current transaction commits.
    Returns how many destinations were found. Never raises, never blocks on a channel."""
    try:
        dests = destinations(event=event, strategy=strategy)
    except Exception as exc:  # a notification problem must never reach trading code
        logger.warning("event=notification_failed stage=resolve notify_event=%s error=%s", event, type(exc).__name__)
        return 0
    if not dests:
        return 0
    strategy_key = getattr(strategy, "strategy_id", "") or ""
    meta = {"event": event, "strategy": strategy_key, "signal": (data or {}).get("signal_id")}
    _queue_after_commit(dests=dests, text=text, meta=meta)
    return len(dests)


def notification_send_test(*, targets: Any) -> int:
    """The admin's "Send a test message": exactly one message to each enabled target given,
    whatever its event filter (and not to the strategy's other targets or the global
    channels). Returns how many were queued."""
    count = 0
    for target in targets:
        if not target.enabled:
            continue
        meta = {"event": "test", "strategy": target.strategy.strategy_id, "signal": None}
        text = f"🔔 test message for {target.strategy} via {target.get_channel_display()} (target #{target.pk})"
        _queue_after_commit(dests=[{"channel": target.channel, "key": f"target:{target.pk}"}], text=text, meta=meta)
        count += 1
    return count


def delivery_record(*, dest: dict[str, Any], error: str | None) -> None:
    """Remember a destination's last delivery, or its last error (time and a short reason),
    for the admin: on the target's row, or for a global channel (which has no row) in Redis."""
    from django.utils import timezone

    now = timezone.now()
    if error is not None:
        # Reasons are built without URLs or tokens (see _post); a channel's own description
        # is scrubbed of the bot token anyway before it is stored.
        if settings.TELEGRAM_BOT_TOKEN:
            error = error.replace(settings.TELEGRAM_BOT_TOKEN, "[redacted]")
        error = error[:300]
    key = str(dest.get("key", ""))
    if key == "global":
        from tvtrader.redisconn import key as rkey
        from tvtrader.redisconn import redis_client

        fields = {"sent_at": now.isoformat()} if error is None else {"error_at": now.isoformat(), "error": error}
        redis_client().hset(rkey("notify", "status", dest.get("channel")), mapping=fields)
        return
    if not key.startswith("target:"):
        return
    from .models import NotificationTarget

    rows = NotificationTarget.objects.filter(pk=int(key.split(":", 1)[1]))
    if error is None:
        rows.update(last_sent_at=now)
    else:
        rows.update(last_error_at=now, last_error=error)


def global_channels_status() -> list[dict[str, Any]]:
    """The global channels (from the environment) with their last delivery and last error."""
    from datetime import datetime

    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    configured = {
        "telegram": bool(settings.TELEGRAM_BOT_TOKEN and settings.TELEGRAM_CHAT_ID),
        "discord": bool(settings.DISCORD_WEBHOOK_URL),
    }
    rows = []
    for channel, is_configured in configured.items():
        try:
            raw = redis_client().hgetall(rkey("notify", "status", channel))
        except Exception:  # the console still opens with Redis down
            raw = {}
        data = {k.decode(): v.decode() for k, v in raw.items()}
        if not is_configured and not data:
            continue
        rows.append(
            {
                "channel": channel,
                "configured": is_configured,
                "last_sent_at": datetime.fromisoformat(data["sent_at"]) if "sent_at" in data else None,
                "last_error_at": datetime.fromisoformat(data["error_at"]) if "error_at" in data else None,
                "last_error": data.get("error", ""),
            }
        )
    return rows


# --- Transports ------------------------------------------------------------------------------


def _retry_after(response: requests.Response, body: Any) -> float:
    try:
        if isinstance(body, dict):
            if "parameters" in body and "retry_after" in body["parameters"]:  # Telegram
                return float(body["parameters"]["retry_after"])
            if "retry_after" in body:  # Discord (seconds, float)
                return float(body["retry_after"])
        return float(response.headers.get("Retry-After", "5"))
    except (TypeError, ValueError):
        return 5.0


def _post(url: str, payload: dict, label: str) -> None:
    try:
        response = requests.post(url, json=payload, timeout=settings.NOTIFY_HTTP_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        # The exception text contains the URL, and the URL contains the secret: keep only the class.
        raise DeliveryError(f"{label} unreachable ({type(exc).__name__})", retry_after=0) from None
    if response.status_code < 300:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 429:
        raise DeliveryError(f"{label} rate limit", retry_after=_retry_after(response, body))
    if response.status_code >= 500:
        raise DeliveryError(f"{label} answered {response.status_code}", retry_after=0)
    description = body.get("description") or body.get("message") if isinstance(body, dict) else ""
    raise DeliveryError(f"{label} refused the message: {response.status_code} {str(description)[:200]}")


def deliver_now(dest: dict[str, Any], text: str) -> str:
    """Send one message to one destination. Raises DeliveryError. Returns the channel."""
    channel, secret = _resolve(dest)
    if channel == "telegram":
        if not secret["token"] or not secret["chat_id"]:
            raise DeliveryError("telegram is not configured")
        url = f"{settings.TELEGRAM_API_URL}/bot{secret['token']}/sendMessage"
        _post(
            url,
            {"chat_id": secret["chat_id"], "text": text[:TELEGRAM_MAX], "disable_web_page_preview": True},
            "telegram",
        )
    else:
        if not secret["url"]:
            raise DeliveryError("discord is not configured")
        _post(secret["url"], {"content": text[:DISCORD_MAX], "allowed_mentions": {"parse": []}}, "discord")
    return channel


# --- Messages for the events we support ------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def signal_outcome_text(signal: Any) -> tuple[str, str]:
    """(event, text) for a signal that reached a final state: executed, or failed/rejected."""
    from django.db.models import Sum

    strategy = signal.strategy_key or "-"
    if getattr(signal, "subscription_id", None):  # one account's run of a fanned-out alert
        strategy += f" on {signal.subscription.account.label}"
    head = f"{strategy}: {signal.action} {signal.ticker}"
    if signal.status in ("executed", "partial"):
        orders = list(signal.orders.all()) if getattr(signal, "pk", None) else []
        filled = [o for o in orders if o.avg_price is not None and o.filled_qty]
        fill_price = filled[-1].avg_price if filled else None
        slippage = filled[-1].slippage_bps if filled else None
        qty = sum((o.filled_qty for o in filled), Decimal(0)) if filled else None
        if qty is None and orders:
            qty = signal.orders.aggregate(q=Sum("filled_qty"))["q"]
        latency = ""
        if signal.sent_at and signal.received_at:
            latency = f", alert→order {(signal.sent_at - signal.received_at).total_seconds() * 1000:.0f} ms"
        if signal.filled_at and signal.received_at:
            latency += f", alert→fill {(signal.filled_at - signal.received_at).total_seconds() * 1000:.0f} ms"
        status = "executed" if signal.status == "executed" else "partly executed"
        text = (
            f"✅ {head} {status}{' (test)' if signal.is_test else ''}\n"
            f"signal price {_fmt(signal.price)}, fill {_fmt(fill_price)}, qty {_fmt(qty)}, "
            f"slippage {_fmt(slippage)} bps{latency}\nsignal #{signal.pk}"
        )
        return "signal_executed", text
    if signal.status == "skipped":  # e.g. a close with no position: worth knowing, not a failure
        return (
            "signal_executed",
            f"ℹ️ {head}: nothing to do — {signal.reason or 'no reason recorded'}\nsignal #{signal.pk}",
        )
    text = f"❌ {head} {signal.status}: {signal.reason or 'no reason recorded'}\nsignal #{signal.pk}"
    return "signal_failed", text


def notify_signal_outcome(*, signal: Any) -> int:
    """For the engine, after the signal's final state is committed."""
    try:
        event, text = signal_outcome_text(signal)
    except Exception as exc:
        logger.warning("event=notification_failed stage=format signal=%s error=%s", signal.pk, type(exc).__name__)
        return 0
    return notification_send(event=event, text=text, strategy=signal.strategy, data={"signal_id": signal.pk})


def notify_kill_switch(
    *, scope: str, engaged: bool, target: str = "", actor: str = "", reason: str = "", strategy=None
):
    """Called by the kill-switch verbs in strategies.services after a change."""
    what = f"{scope} {target}".strip()
    verb = "🛑 kill switch ENGAGED" if engaged else "▶️ kill switch released"
    text = f"{verb}: {what} by {actor or 'system'}" + (f" — {reason}" if reason else "")
    return notification_send(event="kill_switch", text=text, strategy=strategy)


def notify_reconcile_drift(*, account_label: str, lines: list[str]) -> int:
    """For `reconcile`: the differences it found on one account."""
    text = f"⚠️ reconciliation drift on {account_label}:\n" + "\n".join(lines[:30])
    return notification_send(event="reconcile_drift", text=text)
