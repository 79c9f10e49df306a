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
    # Recorded: accepted, invalid fields, the two of "own", the unknown strategy. The wrong
    # passphrase and the two bodies that are not JSON are only counted.
    assert Signal.objects.count() == 5
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


def stored_text(signal: Signal) -> str:
    return json.dumps([signal.payload, signal.raw_body, signal.reason, signal.errors, signal.comment], default=str)


SPELLINGS = [
    # the key escaped, the value escaped, both, in another case, twice (the last one counts)
    '{"pass\\u0070hrase": "%(secret)s", %(rest)s}',
    '{"passphrase": "%(escaped)s", %(rest)s}',
    '{"pass\\u0070hrase": "%(escaped)s", %(rest)s}',
    '{"passphrase": "%(secret)s", "PassPhrase": "%(secret)s", %(rest)s}',
    '{"passphrase": "wrong", "passphrase": "%(secret)s", %(rest)s}',
    '{"passphrase" : "%(secret)s", "meta": {"passphrase": "%(secret)s", "note": "%(secret)s"}, %(rest)s}',
    '{"passphrase": "%(secret)s", "comment": "my pass is %(secret)s", %(rest)s}',
]


@pytest.mark.parametrize("template", SPELLINGS, ids=range(len(SPELLINGS)))
def test_a_strategys_own_passphrase_is_stored_nowhere_however_it_is_spelled(client, template):
    rest = json.dumps(alert_body(strategy_id="own", passphrase=..., price="{{close}}"))[1:-1]
    escaped = "".join(f"\\u{ord(c):04x}" for c in STRATEGY_SECRET)
    body = template % {"secret": STRATEGY_SECRET, "escaped": escaped, "rest": rest}

    response = client.post("/tv-webhook", data=body, content_type="text/plain")

    assert response.status_code == 400, response.content  # authenticated, then refused for its price
    signal = Signal.objects.get()
    assert signal.strategy.strategy_id == "own"
    assert STRATEGY_SECRET not in stored_text(signal)
    assert escaped not in stored_text(signal)
    assert "[redacted]" in signal.raw_body


@pytest.mark.parametrize(
    "body",
    [
        "{'passphrase': '%s', 'strategy_id': 'own', 'action': 'buy'}",
        '{passphrase: "%s", strategy_id: "own", action: "buy"}',
        "passphrase=%s strategy_id=own buy BTCUSDT",
    ],
    ids=["single-quotes", "unquoted-keys", "free-text"],
)
def test_a_body_that_is_not_json_is_never_stored_so_its_passphrase_cannot_be(client, body):
    response = client.post("/tv-webhook", data=body % STRATEGY_SECRET, content_type="text/plain")

    assert response.status_code == 400
    assert Signal.objects.count() == 0
    row = WebhookRejection.objects.get(reason="not_json")
    assert row.last_strategy_key == "own"
    assert STRATEGY_SECRET not in f"{row.last_detail} {row.last_strategy_key} {row.last_user_agent}"


@pytest.mark.parametrize(
    "overrides",
    [
        {"comment": "pass=" + STRATEGY_SECRET},
        {"order_id": STRATEGY_SECRET},
        {"timeframe": STRATEGY_SECRET},
        {"price": STRATEGY_SECRET},
        {"action": STRATEGY_SECRET},
        {"bar_time": STRATEGY_SECRET},
        {"market_position": STRATEGY_SECRET},
    ],
    ids=lambda o: next(iter(o)),
)
def test_a_passphrase_pasted_into_another_field_is_stored_answered_and_logged_nowhere(client, caplog, overrides):
    caplog.set_level(logging.DEBUG)
    body = alert_body(strategy_id="own", passphrase=STRATEGY_SECRET, **overrides)
    response = client.post("/tv-webhook", data=json.dumps(body), content_type="text/plain")

    assert response.status_code in (202, 400), response.content
    signal = Signal.objects.get()
    stored = stored_text(signal) + json.dumps(
        [signal.tv_order_id, signal.timeframe, signal.action, signal.market_position], default=str
    )
    secret = overrides[next(iter(overrides))]
    assert secret not in stored
    assert secret not in response.content.decode()
    assert secret not in caplog.text
