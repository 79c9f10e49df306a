"""The worker outlives its broker: Redis killed and restarted empty again and again (an OOM
kill, a restart), the worker process stays up and executes what arrives afterwards."""

from __future__ import annotations

import json
import os
import time

import pytest

from signals.models import Signal
from tests.conftest import WorkerProcess, alert_body, wait_for
from tests.factories import StrategyFactory
from tests.processes import GunicornProcess, PrivateRedis, app_env, http_post

pytestmark = pytest.mark.slow


def test_the_worker_survives_its_broker_dying_again_and_again(transactional_db, tmp_path):
    StrategyFactory(strategy_id="demo")
    broker = PrivateRedis(tmp_path / "redis")
    broker.start()
    env = app_env(REDIS_URL=broker.url, CELERY_BROKER_URL=broker.url, SIGNAL_REQUEUE_AFTER_SECONDS="1")
    web = GunicornProcess(env, tmp_path / "gunicorn.log")
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=4)
    try:
        web.start()
        worker.start()
        for n in range(int(os.environ.get("BROKER_KILLS", "2"))):
            broker.proc.kill()
            broker.proc.wait(timeout=10)
            time.sleep(0.3 + 0.4 * (n % 3))  # the worker notices at different moments
            broker.start()
            body = json.dumps(alert_body(bar_time=f"2026-11-24T{n:02d}:00:00Z")).encode()
            status, answer, _ = http_post(web.url + "/tv-webhook", body)
            assert status == 202, answer
            wait_for(
                lambda pk=answer["signal_id"]: Signal.objects.get(pk=pk).is_terminal,
                timeout=30,
                message=f"the alert sent after broker restart {n + 1} to be executed",
            )
            assert worker.proc.poll() is None, worker.log()[-3000:]
        assert "Unrecoverable error" not in worker.log()
    finally:
        worker.stop()
        web.stop()
        broker.stop()


@pytest.mark.parametrize("transport", [None, "tvtrader.broker:ResilientTransport"])
def test_a_channel_used_after_its_connection_was_torn_down_raises_a_connection_error(settings, transport):
    """What stopped workers: kombu clears a lost connection's settings, and a channel that
    asks for a new Redis client afterwards got `AttributeError: 'NoneType' object has no
    attribute 'hostname'`, which Celery treats as unrecoverable. Ours raises an error of the
    transport's `connection_errors`, which Celery ignores on close and recovers from."""
    import redis
    from kombu import Connection

    with Connection(settings.CELERY_BROKER_URL, transport=transport) as conn:
        conn.connect()
        channel = conn.channel()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        conn.transport.client = None
        if transport is None:  # kombu's own transport: the crash, as reported upstream
            with pytest.raises(AttributeError, match="hostname"):
                channel._create_client()
        else:
            with pytest.raises(redis.exceptions.ConnectionError) as raised:
                channel._create_client()
            assert isinstance(raised.value, conn.connection_errors)


def test_the_worker_connects_through_the_resilient_transport():
    from tvtrader.broker import ResilientTransport
    from tvtrader.celery import app

    with app.connection_for_read() as conn:
        assert isinstance(conn.transport, ResilientTransport)
