"""An alert's arrival time is taken before anything can wait: nginx's request-start time
when our proxy sent the request, else the first thing the webhook does. A market's signals
run in arrival order, and the stale cut-off judges arrival, however late the database let
the alert be recorded."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from execution.engine import statements
from signals.models import Signal
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db


def post(client, addr: str, arrived: float | None = None, **overrides):
    headers = {"HTTP_X_REQUEST_START": f"t={arrived:.3f}"} if arrived is not None else {}
    return client.post(
        "/tv-webhook", data=json.dumps(alert_body(**overrides)), content_type="text/plain", REMOTE_ADDR=addr, **headers
    )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def test_nginx_request_start_is_the_arrival_time(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.WEBHOOK_DEADLINE_SECONDS = 10  # a proxy that waits this long for an answer
    StrategyFactory(strategy_id="demo")
    arrived = time.time() - 4.2  # waited 4.2 s upstream (a stalled database)

    response = post(client, "127.0.0.1", arrived)

    assert response.status_code == 202
    received_at = Signal.objects.get().received_at
    assert abs(received_at.timestamp() - arrived) < 0.002


@pytest.mark.parametrize("stamp", ["t=abc", "t=99999999999.0", "t=1000000000.000", ""])
def test_a_missing_or_implausible_request_start_falls_back_to_now(client, settings, stamp):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    StrategyFactory(strategy_id="demo")
    before = timezone.now()
    response = client.post(
        "/tv-webhook",
        data=json.dumps(alert_body()),
        content_type="text/plain",
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_REQUEST_START=stamp,
    )
    assert response.status_code == 202
    assert Signal.objects.get().received_at >= before


def test_request_start_from_anyone_but_our_proxy_is_ignored(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    StrategyFactory(strategy_id="demo")
    before = timezone.now()

    assert post(client, "192.0.2.66", time.time() - 100).status_code == 202

    assert Signal.objects.get().received_at >= before


def test_the_stale_cut_off_judges_arrival_not_when_the_database_let_it_in(client, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    settings.WEBHOOK_DEADLINE_SECONDS = 60  # a proxy that waits this long for an answer
    StrategyFactory(strategy_id="demo", max_signal_age_seconds=5)
    now = time.time()
    # Fired 31 s ago, arrived 1 s after it fired, recorded only now (the database hung 30 s).
    kept = post(client, "127.0.0.1", now - 30, fired_at=iso(now - 31), bar_time="2026-11-24T01:00:00Z")
    assert kept.status_code == 202, kept.json()
    # The same age without our proxy's stamp is judged by now: stale.
    refused = post(client, "192.0.2.66", now - 30, fired_at=iso(now - 31), bar_time="2026-11-24T02:00:00Z")
    assert refused.status_code == 422
    assert "stale" in refused.json()["reason"]


def test_a_request_that_waited_upstream_past_its_deadline_is_refused_not_recorded(client, settings):
    """nginx answers 503 itself once its upstream timeout passes: recording the alert after
    that would execute one that TradingView was told failed."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    StrategyFactory(strategy_id="demo")

    response = post(client, "127.0.0.1", time.time() - settings.WEBHOOK_DEADLINE_SECONDS - 1)

    assert response.status_code == 503
    assert Signal.objects.count() == 0


def test_a_market_runs_its_signals_in_arrival_order_not_commit_order(client, settings):
    """Two alerts 0.3 s apart, recorded in reverse order (the first one's request waited
    longer on the database): the one that arrived first runs first."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    StrategyFactory(strategy_id="demo")
    now = time.time()
    second = post(client, "127.0.0.1", now - 0.7, action="sell", bar_time="2026-11-24T02:00:00Z").json()["signal_id"]
    first = post(client, "127.0.0.1", now - 1.0, action="buy", bar_time="2026-11-24T01:00:00Z").json()["signal_id"]
    assert second < first  # committed first

    def claim(pk: int) -> bool:
        at = timezone.now() + timedelta(seconds=settings.INTAKE_HOLD_SECONDS + 1)  # past any hold
        loaded = statements.signal_claim(signal_id=pk, now=at, lease_until=at + timedelta(seconds=60), owner="test")
        return bool(loaded and loaded.claimed)

    assert not claim(second)  # waits for the alert that arrived before it
    assert claim(first)
    Signal.objects.filter(pk=first).update(status=Signal.Status.EXECUTED)
    assert claim(second)
