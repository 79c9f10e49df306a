"""The REST API for scripts: scoped tokens, filters and cursor pagination, the kill-switch
and settings verbs (audited), and no secret ever in an answer."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from signals.models import Signal
from strategies.models import AuditEntry, Strategy, TradingControl
from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory
from tvtrader.api.models import ApiToken
from tvtrader.api.services import api_token_create

from .conftest import client_with

pytestmark = pytest.mark.django_db

CONTROL_CALLS = [
    ("post", "/api/strategies/{sid}/kill/", {"reason": "x"}),
    ("post", "/api/strategies/{sid}/resume/", {}),
    ("patch", "/api/strategies/{sid}/", {"leverage": 3}),
    ("post", "/api/strategies/{sid}/test-signal/", {}),
    ("post", "/api/accounts/{aid}/kill/", {}),
    ("post", "/api/accounts/{aid}/resume/", {}),
    ("post", "/api/global/kill/", {}),
    ("post", "/api/global/resume/", {}),
]


def test_missing_wrong_and_revoked_tokens_are_refused(read_token):
    assert client_with(None).get("/api/signals/").status_code == 401
    assert client_with("tvt_not-a-real-token").get("/api/signals/").status_code == 401
    ApiToken.objects.update(revoked=True)
    assert client_with(read_token).get("/api/signals/").status_code == 401


def test_an_expired_token_is_refused_and_one_not_yet_expired_works(api_user, settings):
    from datetime import timedelta

    from django.utils import timezone

    token, raw = api_token_create(user=api_user, scope="control", name="expiring", days=30)
    assert timezone.now() + timedelta(days=29) < token.expires_at <= timezone.now() + timedelta(days=30)
    assert client_with(raw).get("/api/signals/").status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = client_with(raw).post("/api/global/kill/", {}, format="json")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    settings.METRICS_ALLOWED_IPS, settings.METRICS_TOKEN = [], ""
    assert client_with(raw).get("/metrics").status_code == 401  # the metrics endpoint refuses it too
    with pytest.raises(ValueError, match="positive"):
        api_token_create(user=api_user, scope="read", days=0)


def test_tokens_are_stored_only_as_hashes(read_token):
    token = ApiToken.objects.get()
    assert read_token not in (token.key_hash, token.prefix) and read_token.startswith(token.prefix)


def test_a_read_token_can_never_change_anything(read_api):
    strategy = StrategyFactory(strategy_id="trend", leverage=2)
    calls = [(m, u.format(sid=strategy.strategy_id, aid=strategy.account_id), b) for m, u, b in CONTROL_CALLS]
    for method, url, body in calls:
        response = getattr(read_api, method)(url, body, format="json")
        assert response.status_code == 403, (method, url, response.status_code)
    strategy.refresh_from_db()
    assert not strategy.halted and strategy.leverage == 2
    assert not TradingControl.is_halted() and not Signal.objects.exists() and not AuditEntry.objects.exists()


def test_signals_list_filters_and_pages_with_a_cursor(read_api):
    trend, other = StrategyFactory(strategy_id="trend"), StrategyFactory()
    ids = [SignalFactory(strategy=trend).pk for _ in range(5)]
    SignalFactory(strategy=other)
    SignalFactory(strategy=trend, status=Signal.Status.REJECTED, reason="bad")

    page = read_api.get("/api/signals/", {"strategy": "trend", "status": "accepted", "page_size": 2}).json()
    seen = [s["id"] for s in page["results"]]
    while page["next"]:
        page = read_api.get(page["next"]).json()
        seen += [s["id"] for s in page["results"]]
    assert seen == sorted(ids, reverse=True)
    assert "count" not in page  # no COUNT(*) on a million rows

    detail = read_api.get(f"/api/signals/{ids[0]}/").json()
    assert detail["strategy"] == "trend" and detail["status"] == "accepted" and "payload" in detail
    assert read_api.get("/api/signals/", {"status": "nonsense"}).status_code == 400
    assert read_api.get("/api/signals/999999999/").status_code == 404


def test_accounts_never_show_credentials(read_api):
    account = ExchangeAccountFactory(label="main")
    account.set_credentials(api_key="KEY-123-visible?", api_secret="SECRET-456-visible?")
    account.save()
    body = read_api.get(f"/api/accounts/{account.pk}/").content.decode()
    listing = read_api.get("/api/accounts/").content.decode()
    for text in (body, listing):
        assert "KEY-123" not in text and "SECRET-456" not in text
        assert account.api_key_enc not in text and "_enc" not in text
    assert read_api.get(f"/api/accounts/{account.pk}/").json()["has_credentials"] is True


def test_kill_and_resume_a_strategy_are_audited(control_api):
    strategy = StrategyFactory(strategy_id="trend")
    response = control_api.post("/api/strategies/trend/kill/", {"reason": "news"}, format="json")
    assert response.status_code == 200 and response.json() == {"changed": True, "halted": True}
    assert control_api.post("/api/strategies/trend/kill/", {}, format="json").json()["changed"] is False
    strategy.refresh_from_db()
    assert strategy.halted and strategy.halt_reason == "news" and "my-bot" in strategy.halted_by
    assert control_api.post("/api/strategies/trend/resume/", {}, format="json").json() == {
        "changed": True,
        "halted": False,
    }
    entries = list(AuditEntry.objects.filter(strategy=strategy).order_by("id").values_list("field", "new_value"))
    assert entries == [("halted", "True"), ("halted", "False")]


def test_global_and_account_switches(control_api, read_api):
    account = ExchangeAccountFactory()
    assert control_api.post("/api/global/kill/", {"reason": "drill"}, format="json").json()["changed"]
    assert read_api.get("/api/global/").json()["halted"] is True
    assert control_api.post("/api/global/resume/", {}, format="json").json()["changed"]
    assert not TradingControl.is_halted()
    assert control_api.post(f"/api/accounts/{account.pk}/kill/", {}, format="json").json()["halted"]
    account.refresh_from_db()
    assert account.halted
    assert AuditEntry.objects.filter(target_type="account", target_id=account.label).count() == 1


def test_strategy_settings_are_validated_like_the_admin_and_audited(control_api):
    strategy = StrategyFactory(strategy_id="trend", leverage=2)
    bad = control_api.patch(
        "/api/strategies/trend/",
        {"leverage": 0, "allowed_actions": ["buy", "hold"], "sizing_mode": "yolo"},
        format="json",
    )
    assert bad.status_code == 400
    assert {"leverage", "allowed_actions", "sizing_mode"} <= set(bad.json())
    strategy.refresh_from_db()
    assert strategy.leverage == 2

    good = control_api.patch(
        "/api/strategies/trend/",
        {"leverage": 5, "expected_interval_minutes": 60, "passphrase": "s3cret-passphrase"},
        format="json",
    )
    assert good.status_code == 200, good.content
    assert good.json()["leverage"] == 5 and good.json()["has_passphrase"] and "passphrase" not in good.json()
    strategy.refresh_from_db()
    assert strategy.check_passphrase("s3cret-passphrase")
    changes = {e.field: (e.old_value, e.new_value) for e in AuditEntry.objects.filter(strategy=strategy)}
    assert changes["leverage"] == ("2", "5") and changes["expected_interval_minutes"] == ("", "60")
    assert changes["passphrase_hash"] == ("unset", "changed")
    assert all("my-bot" in e.actor for e in AuditEntry.objects.all())
    assert control_api.patch("/api/strategies/trend/", {"halted": True}, format="json").json()["halted"] is False


def test_send_a_test_signal(control_api):
    StrategyFactory(strategy_id="trend")
    response = control_api.post(
        "/api/strategies/trend/test-signal/", {"action": "sell", "price": "64000"}, format="json"
    )
    assert response.status_code == 201
    signal = Signal.objects.get(pk=response.json()["id"])
    assert signal.is_test and signal.action == "sell" and signal.status == Signal.Status.ACCEPTED
    assert control_api.post("/api/strategies/nope/test-signal/", {}, format="json").status_code == 404


def test_health_reports_in_the_body(read_api):
    body = read_api.get("/api/health/").json()
    assert {"database", "broker", "worker"} <= set(body["checks"]) and body["checks"]["database"]["ok"]


def test_schema_and_docs_are_served_without_a_cdn(read_api, admin_client):
    schema = read_api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and "/api/strategies/{strategy_id}/kill/" in schema.json()["paths"]
    assert client_with(None).get("/api/schema/").status_code == 401
    page = admin_client.get("/api/docs/").content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in page
    for cdn in ("cdn.", "jsdelivr", "unpkg", "cdnjs"):
        assert cdn not in page


def test_create_api_token_command(api_user):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "ops-bot", "--scope", "control", "--name", "cron", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert ApiToken.objects.get(name="cron").scope == "control"
    assert client_with(raw).post("/api/global/kill/", {}, format="json").status_code == 200
    assert ApiToken.objects.get(name="cron").expires_at is None  # no expiry unless asked
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "ghost", stdout=out, stderr=err)
    err = io.StringIO()
    call_command("create_api_token", "ops-bot", "--name", "short", "--days", "7", stdout=io.StringIO(), stderr=err)
    assert ApiToken.objects.get(name="short").expires_at is not None and "valid until" in err.getvalue()


def test_strategy_lookup_survives_odd_ids(read_api):
    StrategyFactory(strategy_id="a.b-c_1")
    assert read_api.get("/api/strategies/a.b-c_1/").json()["strategy_id"] == "a.b-c_1"
    assert Strategy.objects.count() == 1
