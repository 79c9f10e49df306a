"""Celery tasks for operations: notification delivery (queue `notifications`) and the
periodic watchdogs (silence, certificates)."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from django.conf import settings

logger = logging.getLogger("tvtrader.notifications")

_limiters: dict[str, object] = {}


def _rate_limit_acquire(key: str) -> bool:
    """Per destination, shared by every worker process (Redis-backed)."""
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    from signals.selectors import redis_client

    limiter = _limiters.get(key)
    if limiter is None:
        bucket = RedisBucket.init(
            [Rate(settings.NOTIFY_RATE_PER_MINUTE, Duration.MINUTE)], redis_client(), f"tvtrader:notify:rl:{key}"
        )
        limiter = _limiters[key] = Limiter(bucket)
    return bool(limiter.try_acquire(key, blocking=False))


@shared_task(bind=True, name="notifications.deliver", ignore_result=True, acks_late=False, time_limit=60)
def deliver(self, dest: dict, text: str, meta: dict) -> None:
    from . import metrics
    from .notifications import DeliveryError, deliver_now

    key = f"{dest.get('channel')}:{dest.get('key')}"
    log_ids = (
        f"notify_event={meta.get('event')} strategy={meta.get('strategy') or '-'} signal={meta.get('signal') or '-'}"
    )
    try:
        allowed = _rate_limit_acquire(key)
    except Exception as exc:  # the limiter is a courtesy to the channel; never drop over it
        logger.warning("event=notification_ratelimit_unavailable channel=%s error=%s", key, type(exc).__name__)
        allowed = True
    if not allowed:
        countdown = 60 / max(settings.NOTIFY_RATE_PER_MINUTE, 1) + random.uniform(0, 3)
        raise self.retry(args=[dest, text, meta], countdown=countdown, max_retries=None)
    try:
        channel = deliver_now(dest, text)
    except DeliveryError as exc:
        failures = int(meta.get("failures", 0)) + 1
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
