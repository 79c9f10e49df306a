"""Two installs on one Redis database never see each other's work: every key this install
writes — broker queues and kombu's bookkeeping, the worker heartbeat, rate-limit buckets —
lives under its namespace. (`make chaos` runs two whole installs side by side.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
import redis
from django.conf import settings

from execution.ratelimit import order_slot_acquire
from execution.tasks import _heartbeat_write
from signals.outbox import signal_enqueue
from tvtrader.redisconn import namespace_for


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


def test_every_key_this_install_writes_is_under_its_namespace(broker):
    assert signal_enqueue(12345, "demo")
    _heartbeat_write()
    assert order_slot_acquire(bucket_key="bybit:key", per_second=Decimal("5"), timeout=5)

    keys = sorted(k.decode() for k in broker.keys("*"))
    assert any("orders" in k for k in keys), keys  # the queued wake-up is there
    outside = [k for k in keys if not k.startswith(settings.REDIS_NAMESPACE)]
    assert outside == [], outside


def test_two_databases_make_two_namespaces_and_one_database_one():
    a = {"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1", "PORT": 5432, "NAME": "tvtrader"}
    b = {**a, "NAME": "tvtrader_paper"}
    assert namespace_for(a) == namespace_for(dict(a))
    assert namespace_for(a) != namespace_for(b)
