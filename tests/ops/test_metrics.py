"""/metrics: protected, computed from the database and Redis at scrape time, with counters
shared by every process and latency histograms folded from Signal timestamps."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from signals.models import Signal
from tests.factories import SignalFactory
from tvtrader.api.services import api_token_create
from tvtrader.ops import metrics
from tvtrader.redisconn import key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_redis():
    client = redis.Redis.from_url(settings.REDIS_URL)
    for found in client.scan_iter(key("metrics", "*")):
        client.delete(found)
    client.delete(
        *(key(q) for q in ("orders", "default", "notifications", "orders.account-7", "orders.account-7\x06\x163"))
    )
    return client


def samples(response) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_refuse_without_a_token_or_allowed_address(client, settings, django_user_model):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
    _, raw = api_token_create(user=django_user_model.objects.create_user("prom"), scope="read")
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    settings.METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 401


def test_signals_orders_queues_and_exchange_errors(client, settings, clean_redis):
    settings.METRICS_TOKEN = "t"
    SignalFactory.create_batch(3, status=Signal.Status.EXECUTED)
    SignalFactory(status=Signal.Status.REJECTED)
    clean_redis.lpush(key("orders"), "m1", "m2")
    clean_redis.lpush(key("notifications"), "n1")
    clean_redis.lpush(key("orders.account-7"), "a1")
    clean_redis.lpush(key("orders.account-7\x06\x163"), "a2")  # a priority sub-list
    clean_redis.lpush("orders", "another install's message")  # not ours: not counted
    metrics.exchange_error_inc("bybit", "RateLimited")
    metrics.exchange_error_inc("bybit", "RateLimited")
    metrics.exchange_error_inc("binanceusdm", "InsufficientFunds")

    found = samples(client.get("/metrics", HTTP_AUTHORIZATION="Bearer t"))
    assert found[("tvtrader_signals", (("status", "executed"),))] == 3
    assert found[("tvtrader_signals", (("status", "rejected"),))] == 1
    assert found[("tvtrader_signals", (("status", "failed"),))] == 0
    assert found[("tvtrader_orders", (("status", "filled"),))] == 0
    assert found[("tvtrader_queue_depth", (("queue", "orders"),))] == 2
    assert found[("tvtrader_queue_depth", (("queue", "notifications"),))] == 1
    assert found[("tvtrader_queue_depth", (("queue", "orders.account-7"),))] == 2
    assert found[("tvtrader_queue_depth", (("queue", "default"),))] == 0
    errors = ("tvtrader_exchange_errors_total", (("error_class", "RateLimited"), ("exchange", "bybit")))
    assert found[errors] == 2
    assert found[("tvtrader_scrape_ok", (("part", "redis"),))] == 1


def test_latency_histograms_count_each_finished_signal_once(client, settings):
    settings.METRICS_TOKEN = "t"
    metrics.latency_fold()  # the first scrape sets the starting point
    fast = SignalFactory(status=Signal.Status.EXECUTED)
    base = fast.received_at
    Signal.objects.filter(pk=fast.pk).update(
        committed_at=base + timedelta(milliseconds=2),
        started_at=base + timedelta(milliseconds=6),
        sent_at=base + timedelta(milliseconds=9),
        finished_at=base + timedelta(milliseconds=400),
    )
    pending = SignalFactory(status=Signal.Status.ACCEPTED)  # not final yet: waits
    after = SignalFactory(status=Signal.Status.EXECUTED)
    Signal.objects.filter(pk=after.pk).update(sent_at=after.received_at + timedelta(seconds=3))

    first = samples(client.get("/metrics", HTTP_AUTHORIZATION="Bearer t"))
    count = ("tvtrader_signal_stage_seconds_count", (("stage", "received_to_sent"),))
    bucket_10ms = ("tvtrader_signal_stage_seconds_bucket", (("le", "0.01"), ("stage", "received_to_sent")))
    assert first[count] == 1 and first[bucket_10ms] == 1
    assert first[("tvtrader_signal_stage_seconds_count", (("stage", "committed_to_started"),))] == 1

    Signal.objects.filter(pk=pending.pk).update(status=Signal.Status.FAILED)
    second = samples(client.get("/metrics", HTTP_AUTHORIZATION="Bearer t"))
    assert second[count] == 2  # `after` now folded; `fast` not counted twice
    assert second[bucket_10ms] == 1
    assert second[("tvtrader_signal_stage_seconds_sum", (("stage", "received_to_sent"),))] == pytest.approx(3.009)


def test_metric_increments_never_raise_when_redis_is_down(settings, monkeypatch):
    import tvtrader.redisconn as redisconn

    monkeypatch.setattr(redisconn, "_client", None)
    settings.REDIS_URL = "redis://127.0.0.1:9/0"
    metrics.exchange_error_inc("bybit", "NetworkError")  # returns quietly
