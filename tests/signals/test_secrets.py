"""The passphrase never reaches a stored payload, a stored raw body or a log line, whatever
path the alert takes; every log line about a signal names its strategy and signal."""

import json
import logging

import pytest
from django.conf import settings

from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

STRATEGY_SECRET = "demo-only-secret-0042"


@pytest.fixture(autouse=True)
def strategies():
    StrategyFactory(strategy_id="demo")
    own = StrategyFactory(strategy_id="own")
    own.set_passphrase(STRATEGY_SECRET)
    own.save()


def every_path(post_alert):
    passphrase = settings.WEBHOOK_PASSPHRASE
    post_alert()  # accepted
    post_alert()  # duplicate
    post_alert(price="{{close}}", volume="NaN")  # invalid fields
    post_alert(strategy_id="own", passphrase=STRATEGY_SECRET, bar_time="2026-11-24T05:00:00Z")
    post_alert(strategy_id="own", passphrase=STRATEGY_SECRET, action="hold")
    post_alert(passphrase=passphrase + "x")  # wrong
    post_alert(raw='{"passphrase": "' + passphrase + '", "price": {{close}}}')  # not JSON, as text/plain
    post_alert(raw=f"passphrase={passphrase} buy BTCUSDT")  # free text containing it
    post_alert(raw=json.dumps(alert_body(passphrase=passphrase, strategy_id="ghost")))  # unknown strategy


def test_passphrases_are_in_no_stored_field_and_no_log_line(post_alert, caplog):
    caplog.set_level(logging.DEBUG)
    every_path(post_alert)

    secrets = [settings.WEBHOOK_PASSPHRASE, STRATEGY_SECRET]
    assert Signal.objects.count() == 7
    for signal in Signal.objects.all():
        stored = json.dumps(
            [signal.payload, signal.raw_body, signal.reason, signal.errors, signal.comment], default=str
        )
        for secret in secrets:
            assert secret not in stored, f"signal {signal.pk} stores a passphrase"
        assert "passphrase" not in (signal.payload or {})
    for row in WebhookRejection.objects.all():
        assert all(s not in f"{row.last_strategy_key} {row.last_user_agent}" for s in secrets)
    for secret in secrets:
        assert secret not in caplog.text


def test_every_log_line_about_a_signal_names_its_strategy_and_signal(post_alert, caplog):
    caplog.set_level(logging.INFO, logger="tvtrader.signals")
    every_path(post_alert)

    lines = [
        r.getMessage() for r in caplog.records if r.name == "tvtrader.signals" and "event=signal_" in r.getMessage()
    ]
    assert lines
    for line in lines:
        assert "strategy=" in line and "signal=" in line, line
