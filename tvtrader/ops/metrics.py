"""Prometheus metrics, computed at scrape time from the database and Redis.

Counters that processes increment (exchange errors, notifications) live in Redis hashes so
every gunicorn and Celery process adds to the same figure. Latency histograms are folded
from Signal timestamps incrementally: each scrape adds the signals that finished since the
last one (a watermark on the signal id), so they are true cumulative histograms and
`rate()`/`histogram_quantile()` work on them as usual.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta

from django.db.models import Count, Sum
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger("tvtrader.metrics")

COUNTERS = {
    "exchange_errors": (
        "tvtrader_exchange_errors",
        "Exchange errors by exchange and error class",
        ["exchange", "error_class"],
    ),
    "notifications": (
        "tvtrader_notifications",
        "Notification deliveries by channel and outcome",
        ["channel", "outcome"],
    ),
}

# Each stage is the difference of two Signal timestamps (seconds). A stage is observed only
# when both ends are set; negative values (clock skew between TradingView and us) count as 0.
STAGES = {
    "tradingview_to_received": ("fired_at", "received_at"),  # TradingView's {{timenow}} to our receipt
    "received_to_committed": ("received_at", "committed_at"),  # intake: validate + insert + commit
    "committed_to_started": ("committed_at", "started_at"),  # broker + worker pick-up (queue wait)
    "started_to_sent": ("started_at", "sent_at"),  # claim, plan, order row, until the create request
    "sent_to_acked": ("sent_at", "acked_at"),  # exchange round trip for the create
    "acked_to_filled": ("acked_at", "filled_at"),  # acknowledgement to last fill
    "received_to_sent": ("received_at", "sent_at"),  # the headline: alert in to order out
    "received_to_finished": ("received_at", "finished_at"),  # end to end
}
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HIST_KEY = "metrics:latency"
WATERMARK_KEY = "metrics:latency:watermark"
FOLD_LOCK_KEY = "metrics:latency:lock"
# A signal is folded once final, or once this old whatever its state (its missing stages
# are then simply not observed), so a stuck signal cannot hold the watermark forever.
FOLD_AFTER = timedelta(minutes=15)
FOLD_BATCH = 5000


def _redis():
    from tvtrader.redisconn import redis_client

    return redis_client()


def _key(*parts: str) -> str:
    from tvtrader.redisconn import key

    return key(*parts)


def counter_inc(counter: str, field: str, amount: int = 1) -> None:
    """Add to a shared counter. Never raises: metrics must not break the caller."""
    try:
        _redis().hincrby(_key("metrics", counter), field, amount)
    except Exception as exc:
        logger.debug("event=metric_inc_failed counter=%s error=%s", counter, type(exc).__name__)


def exchange_error_inc(exchange: str, error_class: str) -> None:
    """Count one exchange error (e.g. exchange_error_inc("bybit", "RateLimited"))."""
    counter_inc("exchange_errors", f"{str(exchange)[:32]}|{str(error_class)[:64]}")


# --- Latency folding ------------------------------------------------------------------------


def latency_fold() -> int:
    """Add newly finished signals to the Redis histograms. Returns how many were folded."""
    from signals.models import Signal

    client = _redis()
    if not client.set(_key(FOLD_LOCK_KEY), "1", nx=True, ex=30):
        return 0  # another scrape is folding right now
    try:
        watermark = client.get(_key(WATERMARK_KEY))
        if watermark is None:
            # First scrape (or Redis was emptied): start from now, like a restarted counter.
            last = Signal.objects.order_by("-id").values_list("id", flat=True).first() or 0
            client.set(_key(WATERMARK_KEY), last)
            return 0
        watermark = int(watermark)
        now = timezone.now()
        fields = ["id", "status", *{f for pair in STAGES.values() for f in pair}]
        rows = list(Signal.objects.filter(id__gt=watermark).order_by("id").values(*fields)[:FOLD_BATCH])
        pipe = client.pipeline(transaction=False)
        folded = 0
        new_mark = watermark
        for row in rows:
            final = row["status"] not in ("accepted", "processing")
            if not final and row["received_at"] > now - FOLD_AFTER:
                break  # keep the order: later signals wait for this one to finish
            for stage, (start, end) in STAGES.items():
                if row[start] is None or row[end] is None:
                    continue
                seconds = max((row[end] - row[start]).total_seconds(), 0.0)
                bucket = next((b for b in BUCKETS if seconds <= b), math.inf)
                pipe.hincrby(_key(HIST_KEY), f"{stage}|{bucket}", 1)
                pipe.hincrbyfloat(_key(HIST_KEY), f"{stage}|sum", seconds)
            new_mark = row["id"]
            folded += 1
        pipe.set(_key(WATERMARK_KEY), new_mark)
        pipe.execute()
        return folded
    finally:
        client.delete(_key(FOLD_LOCK_KEY))


def _latency_family() -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "tvtrader_signal_stage_seconds",
        "Time spent in each stage of the alert-to-fill chain (from Signal timestamps)",
        labels=["stage"],
    )
    raw = {k.decode(): v.decode() for k, v in _redis().hgetall(_key(HIST_KEY)).items()}
    for stage in STAGES:
        cumulative = 0
        buckets = []
        for bound in (*BUCKETS, math.inf):
            cumulative += int(raw.get(f"{stage}|{bound}", 0))
            buckets.append(("+Inf" if bound == math.inf else str(bound), cumulative))
        family.add_metric([stage], buckets, float(raw.get(f"{stage}|sum", 0.0)))
    return family


# --- The collector ----------------------------------------------------------------------------


def queue_depths() -> dict[str, int]:
    """Messages waiting per Celery queue: LLEN of the Redis lists kombu uses, folding in the
    priority sub-lists it creates ("<queue>\\x06\\x16<n>"). Per-account execution queues
    ("orders.account-<id>", EXECUTION_QUEUE_PER_ACCOUNT) are found by a SCAN of the broker
    database, which holds few keys."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_connect_timeout=0.5, socket_timeout=1.0)
    prefix = _key("")  # this install's queues only (kombu's global_keyprefix)
    keys = {(prefix + q).encode() for q in ("orders", "default", "notifications")}
    for pattern in ("orders*", "default*", "notifications*"):
        keys.update(client.scan_iter(match=prefix + pattern, count=1000, _type="list"))
    keys = sorted(keys)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    depths: dict[str, int] = {}
    for key, length in zip(keys, pipe.execute(), strict=True):
        queue = key.decode(errors="replace")[len(prefix) :].split("\x06\x16", 1)[0]
        depths[queue] = depths.get(queue, 0) + int(length)
    return depths


class TvtraderCollector:
    def collect(self):
        from execution.models import Order
        from signals.models import Signal, WebhookRejection
        from strategies.models import Strategy, TradingControl

        up = GaugeMetricFamily("tvtrader_scrape_ok", "1 when every part of this scrape succeeded", labels=["part"])

        signals = GaugeMetricFamily("tvtrader_signals", "Signals by status (all time)", labels=["status"])
        counts = dict(Signal.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in Signal.Status.values:
            signals.add_metric([status], counts.get(status, 0))
        yield signals

        orders = GaugeMetricFamily("tvtrader_orders", "Orders by status (all time)", labels=["status"])
        counts = dict(Order.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in Order.Status.values:
            orders.add_metric([status], counts.get(status, 0))
        yield orders

        since = timezone.now() - timedelta(minutes=1)
        yield GaugeMetricFamily(
            "tvtrader_signals_stuck",
            "Signals accepted or executing for more than a minute",
            value=Signal.objects.filter(status__in=Signal.PENDING_STATUSES, received_at__lt=since).count(),
        )

        halted = GaugeMetricFamily("tvtrader_kill_switch_engaged", "Kill switches engaged", labels=["scope"])
        halted.add_metric(["global"], 1 if TradingControl.is_halted() else 0)
        halted.add_metric(["strategy"], Strategy.objects.filter(halted=True).count())
        yield halted

        today = timezone.now().date()
        refused = GaugeMetricFamily(
            "tvtrader_webhook_refused_today", "Webhook requests refused today by reason", labels=["reason"]
        )
        for reason, n in WebhookRejection.objects.filter(day=today).values_list("reason").annotate(n=Sum("count")):
            refused.add_metric([reason], n)
        yield refused

        try:
            latency_fold()
            yield _latency_family()
            depth = GaugeMetricFamily("tvtrader_queue_depth", "Messages waiting per Celery queue", labels=["queue"])
            for queue, n in queue_depths().items():
                depth.add_metric([queue], n)
            yield depth
            client = _redis()
            for counter, (name, doc, labels) in COUNTERS.items():
                family = CounterMetricFamily(name, doc, labels=labels)
                for field, value in client.hgetall(_key("metrics", counter)).items():
                    parts = field.decode().split("|", len(labels) - 1)
                    if len(parts) == len(labels):
                        family.add_metric(parts, int(value))
                yield family
            up.add_metric(["redis"], 1)
        except Exception as exc:
            logger.warning("event=metrics_redis_failed error=%s", type(exc).__name__)
            up.add_metric(["redis"], 0)
        yield up
