"""Property tests of the webhook, through Django's test client on PostgreSQL: arbitrary bytes
and arbitrary JSON (lone surrogates, control characters, deep nesting, huge numbers), with
and without the passphrase, never get a 5xx, write at most one log line, store nothing for
an unauthenticated request beyond the bounded refusal counters, and an authenticated alert
with odd text in a free field is recorded with that text."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re

import pytest
from django.conf import settings
from django.db.models import Sum
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

# 120 examples a test keeps the four under a minute on a shared machine; for a longer hunt:
# WEBHOOK_PROPERTY_EXAMPLES=1000 make test ARGS="tests/signals/test_webhook_properties.py".
PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=int(os.environ.get("WEBHOOK_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text as an attacker or a broken script writes it: any character, and often the ones that
# break things (lone surrogates, NUL, line breaks, terminal escapes, BOM, line separators).
NASTY = ["\ud800", "\udfff", "\ud83d", "\ude00", "\x00", "\n", "\r", "\x1b[31m", "\ufeff", "\u2028", "\\", '"', "{{"]
text = st.lists(st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=40).map("".join)
# Numbers as JSON text, including ones Python cannot read as easily as JSON writes them.
huge_numbers = st.one_of(
    st.integers(min_value=-(10**60), max_value=10**60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: json.dumps(f, allow_nan=True)),
    st.sampled_from(["1e999999999", "-1e400", "123456789012345678901234567890.5", "1" * 4400, "-0", "0e-999999"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40), st.floats(), text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)


def json_text(value) -> str:
    """JSON as TradingView would carry it: ASCII, lone surrogates as \\uXXXX escapes."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def with_raw_field(body: dict, name: str, raw_value: str) -> str:
    return json_text(body)[:-1] + f", {json_text(name)}: {raw_value}}}"


@pytest.fixture
def webhook(client, caplog):
    """POST raw bytes; return the answer and what the request wrote to our logs."""
    StrategyFactory(strategy_id="demo", max_signal_age_seconds=0)
    caplog.set_level(logging.DEBUG)

    def post(body: bytes):
        caplog.clear()
        response = client.post("/tv-webhook", data=body, content_type="text/plain")
        lines = [
            r
            for r in caplog.records
            if r.name.startswith(("tvtrader.signals", "django.request"))
            # The throttle's summary of earlier refusals, written when a minute rolls over.
            and "webhook_rejections_suppressed" not in r.getMessage()
        ]
        assert response.status_code < 500, (body[:300], response.content[:300])
        assert len(lines) <= 1, [r.getMessage() for r in lines]
        assert not [r for r in lines if r.exc_info], "no traceback for anything a request sends"
        for line in lines:
            assert "\n" not in line.getMessage() and "\r" not in line.getMessage()
        return response

    return post


def refusals() -> int:
    return WebhookRejection.objects.aggregate(n=Sum("count"))["n"] or 0


def assert_only_counted(before_signals: int, before_refusals: int, response) -> None:
    assert Signal.objects.count() == before_signals, "nothing stored for an unauthenticated request"
    assert refusals() == before_refusals + 1, "each refusal counted once"
    # One source, so one row per reason at most: the counters stay bounded.
    assert WebhookRejection.objects.count() <= 4
    assert response.json()["signal_id"] is None


@given(body=st.one_of(st.binary(max_size=3000), json_values.map(lambda v: json_text(v).encode())))
@PROPERTY_SETTINGS
def test_arbitrary_bytes_and_json_without_the_passphrase_are_only_counted(webhook, body):
    before_signals, before_refusals = Signal.objects.count(), refusals()
    response = webhook(body)

    assert response.status_code in (400, 401, 413)
    assert_only_counted(before_signals, before_refusals, response)


@given(
    field=st.sampled_from(["strategy_id", "passphrase", "action", "comment", "ticker", "extra"]),
    value=st.one_of(
        json_values, st.integers(0, 3000).map(lambda d: ("deep", d)), huge_numbers.map(lambda n: ("raw", n))
    ),
    passphrase=st.one_of(st.just(...), text, st.just("guess"), json_values),
)
@PROPERTY_SETTINGS
def test_alerts_with_a_wrong_or_no_passphrase_are_only_counted_whatever_they_carry(webhook, field, value, passphrase):
    body = alert_body(passphrase=passphrase)
    if isinstance(value, tuple):
        kind, n = value
        raw = deep(n) if kind == "deep" else n
        raw_body = with_raw_field({k: v for k, v in body.items() if k != field}, field, raw)
    else:
        raw_body = json_text({**body, field: value})
    if passphrase == settings.WEBHOOK_PASSPHRASE or (field == "passphrase" and value == settings.WEBHOOK_PASSPHRASE):
        return  # hypothesis found the passphrase; not this property
    before_signals, before_refusals = Signal.objects.count(), refusals()

    response = webhook(raw_body.encode())

    assert response.status_code in (400, 401), response.content
    assert_only_counted(before_signals, before_refusals, response)


order_ids = itertools.count(1)
UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
PLACEHOLDER = re.compile(r"\{\{.*?\}\}")


@given(comment=text, extra=json_values, nesting=st.integers(0, 600))
@PROPERTY_SETTINGS
def test_an_authenticated_alert_with_odd_text_in_free_fields_is_recorded_with_it(webhook, comment, extra, nesting):
    order_id = f"prop-{next(order_ids)}"
    body = alert_body(comment=comment, order_id=order_id, extra=extra)
    raw_body = with_raw_field(body, "nested", deep(nesting, json_text(comment)))

    response = webhook(raw_body.encode())

    # What JSON makes of the text (an escaped surrogate pair is one character), stored with
    # what PostgreSQL cannot hold replaced by U+FFFD, and trimmed like every text field.
    expected = UNSTORABLE.sub("\ufffd", json.loads(json_text(comment))).strip()
    signal = Signal.objects.get(tv_order_id=order_id) if response.status_code == 202 else Signal.objects.first()
    if PLACEHOLDER.search(expected) or len(expected) > 255:
        assert response.status_code == 400 and "comment" in response.json()["errors"]
        assert signal.pk == response.json()["signal_id"] and signal.status == Signal.Status.REJECTED
    else:
        assert response.status_code == 202, response.content
        assert signal.pk == response.json()["signal_id"] and signal.status == Signal.Status.ACCEPTED
        assert signal.comment == expected
        assert signal.payload["comment"] == UNSTORABLE.sub("\ufffd", json.loads(json_text(comment)))
    assert settings.WEBHOOK_PASSPHRASE not in signal.raw_body + json.dumps(signal.payload)


@given(
    field=st.sampled_from(
        [
            "action",
            "ticker",
            "exchange",
            "price",
            "volume",
            "bar_time",
            "fired_at",
            "timeframe",
            "order_id",
            "market_position",
            "position_size",
            "strategy_id",
        ]
    ),
    value=st.one_of(json_values.map(json_text), huge_numbers),
)
@PROPERTY_SETTINGS
def test_an_authenticated_alert_with_any_value_in_any_field_is_answered_and_leaves_a_trace(webhook, field, value):
    body = alert_body(order_id=f"prop-{next(order_ids)}")
    raw_body = with_raw_field({k: v for k, v in body.items() if k != field}, field, value)
    before = Signal.objects.count()
    duplicates = Signal.objects.aggregate(n=Sum("duplicate_count"))["n"] or 0

    response = webhook(raw_body.encode())

    assert response.status_code in (200, 202, 400, 422), response.content
    recorded = Signal.objects.count() == before + 1
    counted = (Signal.objects.aggregate(n=Sum("duplicate_count"))["n"] or 0) == duplicates + 1
    assert recorded or counted, "an authenticated alert is recorded (or counted on its original)"
    if response.status_code == 400:
        assert set(response.json()["errors"]) == {field}
