"""Hostile or broken bodies get a clear 4xx, never a 500 or a 503, cannot fill the disk and
cannot forge a log line; an authenticated alert with odd text is still recorded."""

import json
import logging

import pytest
from django.conf import settings

from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory
from tvtrader.logformat import parse_pairs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def demo():
    return StrategyFactory(strategy_id="demo")


def post_text(client, body):
    return client.post("/tv-webhook", data=body, content_type="text/plain")


def with_field(raw_field: str, **overrides) -> str:
    """An alert body with one more field written as raw JSON text (escapes kept as escapes)."""
    return json.dumps(alert_body(**overrides)).rstrip("}") + ", " + raw_field + "}"


def intake_lines(caplog) -> list[str]:
    """What a request wrote to our log (and Django's request log, where a 500 would go)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith(("tvtrader.signals", "django.request"))]


@pytest.mark.parametrize("number", ["1e5000", "1e999999999", "123456789012345678901234567890"])
def test_absurd_numbers_in_unknown_fields_are_kept_as_text_not_a_500(client, number):
    response = post_text(client, with_field(f'"extra": {number}'))
    assert response.status_code == 202, response.content
    assert isinstance(Signal.objects.get().payload["extra"], str)


def test_an_absurd_price_is_named_not_a_500(client):
    body = json.dumps(alert_body()).replace('"price": 65000.5', '"price": 1e999999999')
    response = post_text(client, body)
    assert response.status_code == 400
    assert "price" in response.json()["errors"]


@pytest.mark.parametrize(
    "escape", ["\\ud800", "\\udfff", "\\ud83d", "x\\udc00y", "\\u0000", "\\u0007\\u001b[31m"], ids=repr
)
def test_an_authenticated_alert_with_unstorable_text_in_a_free_field_is_recorded(client, escape):
    body = json.dumps(alert_body()).replace('"demo"', '"demo", "comment": "odd ' + escape + ' text"')
    response = post_text(client, body)

    assert response.status_code == 202, response.content
    signal = Signal.objects.get(pk=response.json()["signal_id"])
    assert signal.status == Signal.Status.ACCEPTED
    assert signal.comment.startswith("odd ") and signal.comment.endswith(" text")
    assert "\x00" not in signal.comment and "\ud800" not in signal.raw_body
    assert signal.payload["comment"] == signal.comment
    # Whatever was not storable became U+FFFD; control characters PostgreSQL accepts are kept.
    assert json.loads(signal.raw_body)["comment"] == signal.comment


def test_a_lone_surrogate_in_a_key_or_an_unknown_field_is_recorded(client):
    response = post_text(client, with_field('"\\ud800key": ["\\udfff", {"deep": "\\ud800"}]'))
    assert response.status_code == 202, response.content
    assert Signal.objects.get().payload["\ufffdkey"] == ["\ufffd", {"deep": "\ufffd"}]


@pytest.mark.parametrize("field", ["strategy_id", "passphrase", "action"])
def test_a_lone_surrogate_without_the_passphrase_is_a_401_with_one_log_line_at_most(client, caplog, field):
    caplog.set_level(logging.DEBUG)
    body = json.dumps(alert_body(**{"passphrase": "guess", field: "PLACEHOLDER"})).replace("PLACEHOLDER", "\\ud800")

    responses = [post_text(client, body) for _ in range(5)]

    assert {r.status_code for r in responses} == {401}
    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get(reason="bad_passphrase").count == 5
    assert len(intake_lines(caplog)) <= 5
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a refused request"


def test_a_lone_surrogate_in_the_strategy_id_with_the_passphrase_names_the_field(client):
    body = json.dumps(alert_body(strategy_id="PLACEHOLDER")).replace("PLACEHOLDER", "demo\\ud800")
    response = post_text(client, body)

    assert response.status_code == 400
    assert "strategy_id" in response.json()["errors"]
    assert Signal.objects.get().status == Signal.Status.REJECTED


FORGED = "demo\nevent=signal_accepted strategy=demo signal=forged\r\n2026-01-01 level=INFO"


def test_a_newline_in_the_strategy_id_of_a_refused_request_cannot_forge_a_log_line(client, caplog):
    caplog.set_level(logging.DEBUG)
    post_text(client, json.dumps(alert_body(passphrase="guess", strategy_id=FORGED)))

    lines = intake_lines(caplog)
    assert len(lines) == 1
    assert "\n" not in lines[0] and "\r" not in lines[0]
    fields = parse_pairs(lines[0])
    assert fields["event"] == "webhook_refused"
    assert "signal" not in fields, "the forged pair stays inside the quoted strategy value"
    assert fields["strategy"].startswith("demo\\nevent=signal_accepted")


@pytest.mark.parametrize(
    "overrides",
    [{"action": FORGED}, {"price": FORGED}, {"strategy_id": FORGED}, {"ticker": FORGED}],
    ids=["action", "price", "strategy_id", "ticker"],
)
def test_user_text_quoted_in_a_rejection_cannot_forge_a_log_line(client, caplog, overrides):
    caplog.set_level(logging.DEBUG)
    response = post_text(client, json.dumps(alert_body(**overrides)))
    assert response.status_code == 400

    for line in intake_lines(caplog):
        assert "\n" not in line and "\r" not in line
        fields = parse_pairs(line)
        assert fields["event"] == "signal_rejected"
        assert fields["signal"] == str(response.json()["signal_id"])


@pytest.mark.parametrize(
    "body",
    [
        "BTCUSDT crossed 65000",
        '{"action": "buy", "price": {{close}}}',
        "hello\x00world",
        b"\xff\xfe\x00garbage",
        "[1, 2, 3]",
        '{"a": ' * 1500 + "1" + "}" * 1500,
    ],
    ids=["text", "bare-placeholder", "nul", "not-utf8", "list", "too-deep-for-the-parser"],
)
def test_unauthenticated_garbage_is_counted_never_stored(client, caplog, body):
    caplog.set_level(logging.DEBUG)
    response = post_text(client, body)

    assert response.status_code == 400
    assert response.json()["status"] == "rejected" and response.json()["signal_id"] is None
    assert response.json()["reason"].startswith("not JSON")
    assert Signal.objects.count() == 0
    row = WebhookRejection.objects.get()
    assert (row.reason, row.count) == ("not_json", 1)
    assert row.last_detail == response.json()["reason"]
    assert len(intake_lines(caplog)) == 1


def test_a_flood_of_garbage_is_only_counted_in_bounded_rows_with_throttled_lines(client, caplog):
    caplog.set_level(logging.DEBUG)
    for i in range(70):
        assert post_text(client, f"garbage {i}").status_code == 400

    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get(reason="not_json").count == 70
    assert len(intake_lines(caplog)) <= 20 + 1


def test_a_broken_template_is_counted_with_where_it_broke_and_the_strategy_it_names(client):
    broken = json.dumps(alert_body()).replace('"volume": 0.01', '"volume": ,')
    response = post_text(client, broken)

    assert response.status_code == 400
    assert "line 1 column" in response.json()["reason"]
    row = WebhookRejection.objects.get(reason="not_json")
    assert row.last_strategy_key == "demo"
    assert "line 1 column" in row.last_detail
    assert settings.WEBHOOK_PASSPHRASE not in f"{row.last_detail} {row.last_strategy_key}"
    assert Signal.objects.count() == 0


def test_the_console_shows_how_many_requests_were_refused_and_why(client, admin_client):
    for _ in range(3):
        post_text(client, '{"strategy_id": "demo", "action": "buy",}')

    dashboard = admin_client.get("/admin/").content.decode()
    assert "Alerts refused: not JSON" in dashboard and "3 today" in dashboard
    assert "Last for demo" in dashboard
    listing = admin_client.get("/admin/signals/webhookrejection/?reason=not_json").content.decode()
    assert "not JSON" in listing and "demo" in listing


def test_deep_nesting_that_parses_is_stored_bounded(client):
    deep = '"extra": ' + "[" * 200 + "1" + "]" * 200
    response = post_text(client, with_field(deep))

    assert response.status_code == 202
    stored = json.dumps(Signal.objects.get().payload["extra"])
    assert "nested too deeply" in stored
    assert stored.count("[") <= 20


@pytest.mark.parametrize("number", ["0e-999999", "-0E+999999", "0.000"])
def test_a_zero_written_with_an_absurd_exponent_is_zero_not_a_database_error(client, number):
    response = post_text(client, with_field(f'"position_size": {number}'))

    assert response.status_code == 202, response.content
    assert Signal.objects.get().position_size == 0


def test_an_integer_longer_than_python_reads_is_still_json(client):
    response = post_text(client, with_field('"extra": ' + "1" * 4400))

    assert response.status_code == 202, response.content
    assert Signal.objects.get().payload["extra"] == "1" * 4400


def test_a_nul_in_the_user_agent_of_a_refused_request_is_counted_without_a_traceback(client, caplog):
    caplog.set_level(logging.DEBUG)
    body = json.dumps(alert_body(passphrase="guess"))
    response = client.post("/tv-webhook", data=body, content_type="text/plain", HTTP_USER_AGENT="evil\x00agent\n")

    assert response.status_code == 401
    row = WebhookRejection.objects.get(reason="bad_passphrase")
    assert row.count == 1 and row.last_user_agent == "evil\ufffdagent\n"
    assert not [r for r in caplog.records if r.exc_info]
    assert len(intake_lines(caplog)) == 1


def test_a_nul_in_the_content_type_of_an_alert_does_not_cost_it(client):
    response = client.post("/tv-webhook", data=json.dumps(alert_body()), content_type="text/plain\x00; x")

    assert response.status_code == 202, response.content
    assert Signal.objects.get().content_type == "text/plain\ufffd; x"
