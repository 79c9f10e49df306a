"""Never lose an alert when something is down, proven with real processes: gunicorn as
deployed, PostgreSQL behind a proxy we can cut, a private Redis we stop and restart, a real
Celery worker. And /health says which part is down."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from django.conf import settings
from django.db import connection

from signals.models import Signal
from tests.conftest import alert_body, wait_for
from tests.conftest import test_database_url as database_url
from tests.factories import StrategyFactory
from tests.processes import GunicornProcess, PrivateRedis, TcpProxy, http_get, http_post

pytestmark = pytest.mark.slow


def server_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        REDIS_NAMESPACE=settings.REDIS_NAMESPACE,
        TVTRADER_VAR_DIR=str(settings.VAR_DIR),
        WEBHOOK_PASSPHRASE=settings.WEBHOOK_PASSPHRASE,
        CREDENTIALS_ENCRYPTION_KEYS=",".join(settings.CREDENTIALS_ENCRYPTION_KEYS),
        LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return env


def received(worker) -> int:
    """How many execution tasks the worker says it received."""
    return len(re.findall(r"execution\.execute_signal\[[0-9a-f-]+\] received", worker.log()))


def alert(**overrides) -> bytes:
    return json.dumps(alert_body(**overrides)).encode()


@pytest.fixture
def started():
    processes = []
    yield processes
    for process in reversed(processes):
        if isinstance(process, TcpProxy):
            process.close()
        else:
            process.stop()


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="the proxy stands in front of PostgreSQL"
)
def test_database_down_answers_503_fast_records_nothing_and_the_resend_is_kept(transactional_db, tmp_path, started):
    StrategyFactory(strategy_id="demo")
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    started.append(proxy)
    proxied_url = database_url().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
    server = GunicornProcess(server_env(DATABASE_URL=proxied_url), tmp_path / "gunicorn.log")
    started.append(server)
    server.start()
    webhook = server.url + "/tv-webhook"

    status, body, _ = http_post(webhook, alert(bar_time="2026-11-24T01:00:00Z"))
    assert (status, body["status"]) == (202, "accepted")

    proxy.cut()  # the database is gone, mid-life of the worker's persistent connection
    status, body, took = http_post(webhook, alert(bar_time="2026-11-24T02:00:00Z"))
    assert status == 503
    assert body["status"] == "error"
    assert took < 1.0, f"a 503 must be fast so TradingView resends; took {took:.2f} s"
    assert Signal.objects.count() == 1

    health_status, health = http_get(server.url + "/health")
    assert health_status == 503
    assert health["checks"]["database"]["ok"] is False

    proxy.restore()  # TradingView resends on 5xx: the alert lands once the database is back
    status, body, _ = http_post(webhook, alert(bar_time="2026-11-24T02:00:00Z"))
    assert (status, body["status"]) == (202, "accepted")
    status, body, _ = http_post(webhook, alert(bar_time="2026-11-24T02:00:00Z"))
    assert body["status"] == "duplicate"
    assert Signal.objects.count() == 2

    assert settings.WEBHOOK_PASSPHRASE not in server.log()
    assert "event=webhook_unavailable failure=database_error:OperationalError recorded=no" in server.log()
    assert "Traceback" not in server.log()


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="the proxy stands in front of PostgreSQL"
)
def test_database_that_stops_answering_gets_a_503_within_2_s_and_a_one_line_record(transactional_db, tmp_path, started):
    """Packets dropped: the database neither answers nor hangs up. TradingView gives up at
    3 s, so the webhook answers 503 within 2 s, on a kept connection and on a new one, and
    leaves one line saying what the alert was (never the passphrase, never a traceback)."""
    StrategyFactory(strategy_id="demo")
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    started.append(proxy)
    proxied_url = database_url().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
    server = GunicornProcess(server_env(DATABASE_URL=proxied_url), tmp_path / "gunicorn.log")
    started.append(server)
    server.start()
    webhook = server.url + "/tv-webhook"
    status, body, _ = http_post(webhook, alert(bar_time="2026-11-24T01:00:00Z"))
    assert (status, body["status"]) == (202, "accepted")

    proxy.blackhole()
    answers = [http_post(webhook, alert(bar_time=f"2026-11-24T0{hour}:00:00Z", ticker="ETHUSDT.P")) for hour in (2, 3)]
    proxy.restore()
    for status, body, took in answers:
        assert status == 503, body
        assert took < 2.0, f"answered after {took:.2f} s"
        assert "retry" in body["reason"]
    lines = [line for line in server.log().splitlines() if "event=webhook_unavailable" in line]
    assert len(lines) == 2, server.log()[-3000:]
    assert "failure=database_timeout recorded=no" in lines[0]
    assert "strategy_id=demo action=buy ticker=ETHUSDT.P" in lines[0]
    assert "bar_time=2026-11-24T02:00:00Z" in lines[0] and "bar_time=2026-11-24T03:00:00Z" in lines[1]
    assert "Traceback" not in server.log()
    assert settings.WEBHOOK_PASSPHRASE not in server.log()

    # The second one was not even tried: the database had just timed out in this worker.
    assert "failure=database_timeout_recently recorded=no" in lines[1]

    # The database is back: within a moment the worker tries it again (a fresh connection),
    # and the 503'd alerts left nothing behind (their queries were never sent).
    back = wait_for(
        lambda: (answer := http_post(webhook, alert(bar_time="2026-11-24T04:00:00Z")))[0] == 202 and answer,
        timeout=5,
        interval=0.1,
        message="the webhook to accept again",
    )
    assert back[1]["status"] == "accepted"
    assert Signal.objects.filter(ticker="ETHUSDT.P").count() == 0


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="the proxy stands in front of PostgreSQL"
)
def test_database_restart_between_alerts_costs_no_alert(transactional_db, tmp_path, started):
    """Every gunicorn worker's kept connection dies when PostgreSQL restarts. The webhook does
    not pay a health-check round trip per alert; it must still answer the first alert after
    the restart with 202, not a 503 that would delay the order by TradingView's resend."""
    StrategyFactory(strategy_id="demo")
    db = connection.settings_dict
    proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    started.append(proxy)
    proxied_url = database_url().replace(f":{db['PORT'] or 5432}/", f":{proxy.port}/")
    server = GunicornProcess(server_env(DATABASE_URL=proxied_url), tmp_path / "gunicorn.log", workers=2)
    started.append(server)
    server.start()
    webhook = server.url + "/tv-webhook"
    # Several alerts, so that every sync worker holds a kept connection.
    for hour in range(8):
        status, body, _ = http_post(webhook, alert(bar_time=f"2026-11-24T0{hour}:00:00Z"))
        assert status == 202, body

    proxy.cut()
    proxy.restore()  # a restart: the kept connections are dead, new ones work

    for hour in range(8):
        status, body, _ = http_post(webhook, alert(bar_time=f"2026-11-24T1{hour}:00:00Z"))
        assert (status, body["status"]) == (202, "accepted"), body
    assert Signal.objects.filter(status=Signal.Status.ACCEPTED).count() == 16
    assert "webhook_db_reconnect" in server.log()
    assert "webhook_db_unavailable" not in server.log()


def test_broker_down_alert_is_still_accepted_and_runs_once_the_broker_returns(
    transactional_db, tmp_path, started, worker_factory
):
    StrategyFactory(strategy_id="demo")
    broker = PrivateRedis(tmp_path / "redis")
    started.append(broker)
    broker.start()
    env = {"REDIS_URL": broker.url, "CELERY_BROKER_URL": broker.url, "SIGNAL_REQUEUE_AFTER_SECONDS": "1"}
    server = GunicornProcess(server_env(**env), tmp_path / "gunicorn.log")
    started.append(server)
    server.start()

    broker.stop()
    failed_at = time.monotonic()
    status, body, took = http_post(server.url + "/tv-webhook", alert())
    assert (status, body["status"]) == (202, "accepted")
    assert took < 1.0
    signal = Signal.objects.get(pk=body["signal_id"])
    assert signal.status == Signal.Status.ACCEPTED and signal.committed_at is not None
    assert signal.enqueue_count == 0

    health_status, health = http_get(server.url + "/health")
    assert health_status == 503
    assert health["checks"]["broker"]["ok"] is False

    broker.start()  # back, and empty: the wake-up that failed is gone
    worker = worker_factory(env=env)
    time.sleep(1.1)  # older than SIGNAL_REQUEUE_AFTER_SECONDS
    from kombu import Connection

    from tvtrader.celery import app

    with Connection(broker.url) as conn:  # what beat does every 10 s
        app.send_task("signals.sweep", connection=conn, queue="default")

    wait_for(
        lambda: Signal.objects.get(pk=signal.pk).enqueue_count == 1,
        timeout=20,
        message="the sweeper to re-queue the committed signal",
    )
    worker.logged(f"event=signal_requeued strategy=demo signal={signal.pk}")
    # A real worker picked the wake-up up: the signal leaves `accepted` once the execution
    # engine runs; until then the worker's log shows the task was delivered.
    wait_for(
        lambda: (
            Signal.objects.get(pk=signal.pk).status != Signal.Status.ACCEPTED
            or "execution.execute_signal[" in worker.log()
            and "received" in worker.log()
        ),
        timeout=20,
        message="a worker to receive the execution task",
    )
    assert Signal.objects.get(pk=signal.pk).enqueue_count == 1

    # The web process publishes again by itself once its back-off after the failure is over.
    time.sleep(max(0.0, failed_at + 5.5 - time.monotonic()))
    status, body, _ = http_post(server.url + "/tv-webhook", alert(bar_time="2026-11-24T03:00:00Z"))
    assert (status, body["status"]) == (202, "accepted")
    wait_for(
        lambda: Signal.objects.get(pk=body["signal_id"]).status != Signal.Status.ACCEPTED or received(worker) >= 2,
        timeout=20,
        message="the new alert to be published directly and received",
    )
    assert Signal.objects.get(pk=body["signal_id"]).enqueue_count == 0  # not via the sweeper


@pytest.mark.django_db(transaction=True)
def test_health_is_200_with_database_broker_and_a_live_worker(client, worker_factory):
    from execution.tasks import heartbeat
    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.redisconn import key, redis_client

    redis_client().delete(key(HEARTBEAT_KEY))
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"] == {"ok": False, "error": "no heartbeat from a worker"}
    assert response.json()["checks"]["database"]["ok"] and response.json()["checks"]["broker"]["ok"]

    worker = worker_factory()
    # A worker reports itself once warm, then whenever beat sends this (every 10 s).
    wait_for(lambda: client.get("/health").status_code == 200, timeout=20, message="a worker heartbeat")
    heartbeat.delay()

    body = client.get("/health").json()
    assert body["ok"] is True
    assert body["checks"]["worker"]["heartbeat_age_s"] < 20
    assert body["last_signal_age_s"] is None

    StrategyFactory(strategy_id="demo")
    client.post("/tv-webhook", data=alert(), content_type="text/plain")
    assert 0 <= client.get("/health").json()["last_signal_age_s"] < 10

    worker.stop()  # a stopped worker takes its heartbeat with it: /health says so at once
    assert client.get("/health").json()["checks"]["worker"] == {"ok": False, "error": "no heartbeat from a worker"}


@pytest.mark.django_db
def test_health_ignores_the_heartbeat_of_a_worker_that_was_killed(client):
    """After a worker is SIGKILLed (and restarted), its last heartbeat is still fresh: it
    must not make /health green while the new worker is still warming up."""
    import json
    import os

    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.processes import lease_owner
    from tvtrader.redisconn import key, redis_client

    host, boot, _pid, _start = lease_owner().split("|")
    dead = "|".join([host, boot, str(2**22 + os.getpid()), "1"])  # no such process
    redis_client().set(key(HEARTBEAT_KEY), json.dumps({"at": time.time(), "owner": dead}))
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"] == {"ok": False, "error": "the worker that last reported is gone"}
    redis_client().delete(key(HEARTBEAT_KEY))


@pytest.mark.django_db
def test_health_fails_when_the_worker_heartbeat_is_stale(client, settings):
    from signals.selectors import HEARTBEAT_KEY
    from tvtrader.redisconn import key, redis_client

    stale = time.time() - settings.WORKER_HEARTBEAT_MAX_AGE_SECONDS - 30
    redis_client().set(key(HEARTBEAT_KEY), json.dumps({"at": stale}))
    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["ok"] is False
    redis_client().delete(key(HEARTBEAT_KEY))


def test_web_workers_warm_up_at_start_without_noise(transactional_db, tmp_path, started):
    """Each gunicorn worker opens its connections and sends one request through Django
    before its first alert (deploy/gunicorn.conf.py); that must work with a production host
    list and leave nothing alarming in the log."""
    StrategyFactory(strategy_id="demo")
    server = GunicornProcess(
        server_env(ALLOWED_HOSTS=".tv.example.com,127.0.0.1"), tmp_path / "gunicorn.log", workers=2
    )
    started.append(server)
    server.start()
    status, body, _ = http_post(server.url + "/tv-webhook", alert(bar_time="2026-11-24T05:00:00Z"))
    assert (status, body["status"]) == (202, "accepted")
    log = server.log()
    for bad in ("intake_warm_failed", "warm-up request failed", "DisallowedHost", "Invalid HTTP_HOST", "Traceback"):
        assert bad not in log, log
