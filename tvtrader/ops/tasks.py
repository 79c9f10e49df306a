"""Celery tasks for operations: notification delivery (queue `notifications`) and the
periodic watchdogs (silence, certificates)."""

from __future__ import annotations

import logging
import random
import time

from celery import shared_task
from django.conf import settings

logger = logging.getLogger("tvtrader.notifications")


def _rate_limit_acquire(key: str) -> float:
    """Per destination, shared by every worker process: a fixed one-minute window counted
    with an atomic Redis INCR. Returns 0 when the message may go now, else the seconds
    until the next window.

    Not pyrate-limiter's RedisBucket: it counts only entries stamped up to the caller's own
    clock reading, so two processes acquiring in the same millisecond can both be admitted
    past the limit (seen here: 4 admitted under a limit of 3)."""
    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    now = time.time()
    window = int(now // 60)
    counter = rkey("notify", "rl", key, window)
    pipe = redis_client().pipeline()
    pipe.incr(counter)
    pipe.expire(counter, 120)
    count, _ = pipe.execute()
    if count <= settings.NOTIFY_RATE_PER_MINUTE:
        return 0.0
    return (window + 1) * 60 - now


@shared_task(bind=True, name="notifications.deliver", ignore_result=True, acks_late=False, time_limit=60)
def deliver(self, dest: dict, text: str, meta: dict) -> None:
    from . import metrics
    from .notifications import DeliveryError, deliver_now, delivery_status_record

    key = f"{dest.get('channel')}:{dest.get('key')}"
    log_ids = (
        f"notify_event={meta.get('event')} strategy={meta.get('strategy') or '-'} signal={meta.get('signal') or '-'}"
    )
    try:
        wait = _rate_limit_acquire(key)
    except Exception as exc:  # the limiter is a courtesy to the channel; never drop over it
        logger.warning("event=notification_ratelimit_unavailable channel=%s error=%s", key, type(exc).__name__)
        wait = 0.0
    if wait:
        # Over this minute's allowance: try again in the next window (spread a little so the
        # backlog does not arrive as one burst).
        raise self.retry(args=[dest, text, meta], countdown=wait + random.uniform(0, 10), max_retries=None)
    try:
        channel = deliver_now(dest, text)
    except DeliveryError as exc:
        failures = int(meta.get("failures", 0)) + 1
        delivery_status_record(dest=dest, ok=False, error=str(exc))
        if exc.retry_after is None or failures > settings.NOTIFY_MAX_RETRIES:
            metrics.counter_inc("notifications", f"{dest.get('channel')}|failed")
            logger.warning(
                "event=notification_failed channel=%s %s failures=%d error=%r", key, log_ids, failures, str(exc)
            )
            return
        metrics.counter_inc("notifications", f"{dest.get('channel')}|retried")
        countdown = max(exc.retry_after, min(2**failures, 300)) + random.uniform(0, 1)
        logger.info(
            "event=notification_retry channel=%s %s failures=%d in_s=%.0f error=%r",
            key,
            log_ids,
            failures,
            countdown,
            str(exc),
        )
        raise self.retry(
            args=[dest, text, {**meta, "failures": failures}], countdown=countdown, max_retries=None
        ) from None
    delivery_status_record(dest=dest, ok=True)
    metrics.counter_inc("notifications", f"{channel}|sent")
    logger.info("event=notification_sent channel=%s %s", key, log_ids)


@shared_task(name="ops.check_silence", ignore_result=True, time_limit=60)
def check_silence() -> int:
    from .watchdogs import silence_check_and_notify

    return silence_check_and_notify()


@shared_task(name="ops.check_certificates", ignore_result=True, time_limit=120)
def check_certificates() -> int:
    from .watchdogs import certificates_check_and_notify

    return certificates_check_and_notify()
