"""Who may place a signal: the global passphrase, a strategy's own passphrase, the source-IP
allowlist and trusted proxies; refused attempts are counted without filling the disk."""

import hmac
import json
import logging

import pytest

from signals import services
from signals.models import Signal, WebhookRejection
from tests.conftest import alert_body
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

TRADINGVIEW_IP = "52.89.214.238"


@pytest.fixture(autouse=True)
def demo_strategy():
    return StrategyFactory(strategy_id="demo")


def post_from(client, addr: str, headers: dict | None = None, **overrides):
    return client.post(
        "/tv-webhook",
        data=json.dumps(alert_body(**overrides)),
        content_type="text/plain",
        REMOTE_ADDR=addr,
        **(headers or {}),
    )


# --- passphrases -------------------------------------------------------------------------


def test_global_passphrase_admits_an_alert(post_alert):
    assert post_alert().status_code == 202


@pytest.mark.parametrize(
    "overrides",
    [
        {"passphrase": "wrong"},
        {"passphrase": ...},
        {"passphrase": ""},
        {"passphrase": 12345},
        {"passphrase": "wrong", "strategy_id": "nobody-has-this"},
    ],
    ids=["wrong", "missing", "empty", "not-a-string", "unknown-strategy"],
)
def test_refused_passphrase_gets_the_same_401_whatever_was_wrong(post_alert, overrides):
    response = post_alert(**overrides)

    assert response.status_code == 401
    body = response.json()
    assert isinstance(body.pop("elapsed_ms"), float)
    assert body == {"status": "rejected", "signal_id": None, "reason": "unauthorized"}
    assert Signal.objects.count() == 0


def test_strategy_passphrase_replaces_the_global_one(post_alert, demo_strategy):
    demo_strategy.set_passphrase("only-for-demo-42")
    demo_strategy.save()

    assert post_alert(passphrase="only-for-demo-42").status_code == 202
    assert post_alert().status_code == 401  # the global passphrase no longer works for it
    assert post_alert(passphrase="only-for-demo-42", strategy_id="other").status_code == 401


def test_strategy_passphrase_is_stored_hashed(demo_strategy):
    demo_strategy.set_passphrase("only-for-demo-42")
    demo_strategy.save()
    demo_strategy.refresh_from_db()

    assert "only-for-demo-42" not in demo_strategy.passphrase_hash
    assert demo_strategy.passphrase_hash.startswith("hs256$")
    assert demo_strategy.check_passphrase("only-for-demo-42")
    assert not demo_strategy.check_passphrase("only-for-demo-43")


def test_passphrases_are_compared_in_constant_time(post_alert, demo_strategy, monkeypatch):
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    post_alert(passphrase="guess")
    assert compared, "the global passphrase must be checked with hmac.compare_digest"

    compared.clear()
    demo_strategy.set_passphrase("only-for-demo-42")
    demo_strategy.save()
    post_alert(passphrase="guess")
    assert len(compared) == 2, "both the global and the strategy passphrase are compared, every time"


# --- refused attempts are counted, bounded and throttled -----------------------------------


def test_refused_attempts_are_counted_per_source_and_reason(client):
    for _ in range(3):
        post_from(client, "203.0.113.7", passphrase="guess")
    post_from(client, "203.0.113.8", passphrase="guess", strategy_id="demo")

    rows = {r.source: r for r in WebhookRejection.objects.filter(reason="bad_passphrase")}
    assert rows["203.0.113.7"].count == 3
    assert rows["203.0.113.8"].count == 1
    assert rows["203.0.113.8"].last_strategy_key == "demo"


def test_a_flood_of_forged_requests_creates_bounded_rows_and_few_log_lines(client, settings, monkeypatch, caplog):
    settings.WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY = 5
    monkeypatch.setattr(services, "_rejection_log", services._LogThrottle(per_minute=10))
    caplog.set_level(logging.INFO)

    sources = [f"198.51.100.{i}" for i in range(1, 61)]
    for addr in sources:
        assert post_from(client, addr, passphrase=f"forged-{addr}").status_code == 401

    assert WebhookRejection.objects.count() == 5 + 1
    folded = WebhookRejection.objects.get(source="*")
    assert folded.count == 60 - 5
    assert sum(WebhookRejection.objects.values_list("count", flat=True)) == 60
    refusal_lines = [r for r in caplog.records if "webhook_refused" in r.getMessage()]
    assert len(refusal_lines) <= 10
    assert Signal.objects.count() == 0


# --- source-IP allowlist and trusted proxies --------------------------------------------------


def test_allowlist_off_accepts_any_source(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = False
    assert post_from(client, "192.0.2.10").status_code == 202


def test_allowlist_on_accepts_tradingview_and_refuses_others(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True

    assert post_from(client, TRADINGVIEW_IP).status_code == 202
    refused = post_from(client, "192.0.2.10", bar_time="2026-11-24T03:00:00Z")
    assert refused.status_code == 403
    assert refused.json()["reason"] == "forbidden"
    assert Signal.objects.count() == 1
    assert WebhookRejection.objects.get(reason="ip_not_allowed").source == "192.0.2.10"


def test_allowlist_accepts_extra_addresses_and_networks(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True
    settings.WEBHOOK_EXTRA_ALLOWED_IPS = ["192.0.2.10", "10.8.0.0/24"]

    assert post_from(client, "192.0.2.10").status_code == 202
    assert post_from(client, "10.8.0.77", bar_time="2026-11-24T03:00:00Z").status_code == 202
    assert post_from(client, "10.8.1.77", bar_time="2026-11-24T04:00:00Z").status_code == 403


def test_forwarded_for_from_a_trusted_proxy_is_the_real_source(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True
    settings.TRUSTED_PROXIES = ["127.0.0.1"]

    response = post_from(client, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": TRADINGVIEW_IP})
    assert response.status_code == 202
    assert Signal.objects.get().remote_addr == TRADINGVIEW_IP

    refused = post_from(client, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": "192.0.2.99"}, bar_time="2026-11-24T03:00:00Z")
    assert refused.status_code == 403


def test_forged_forwarded_for_from_an_untrusted_peer_cannot_pass_the_allowlist(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True
    settings.TRUSTED_PROXIES = ["127.0.0.1"]

    response = post_from(client, "192.0.2.66", {"HTTP_X_FORWARDED_FOR": TRADINGVIEW_IP})

    assert response.status_code == 403
    assert Signal.objects.count() == 0
    assert WebhookRejection.objects.get(reason="ip_not_allowed").source == "192.0.2.66"


def test_forwarded_for_is_ignored_when_no_proxy_is_trusted(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True
    settings.TRUSTED_PROXIES = []

    assert post_from(client, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": TRADINGVIEW_IP}).status_code == 403


def test_a_proxy_chain_uses_the_address_our_proxy_appended(client, settings):
    settings.WEBHOOK_IP_ALLOWLIST_ENABLED = True
    settings.TRUSTED_PROXIES = ["127.0.0.1"]

    # The client put TradingView's address first; our nginx appended the real one last.
    forged = post_from(client, "127.0.0.1", {"HTTP_X_FORWARDED_FOR": f"{TRADINGVIEW_IP}, 192.0.2.66"})
    assert forged.status_code == 403


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_parallel_flood_from_many_sources_stays_within_the_row_bound(threaded_server, settings):
    from tests.signals.test_dedup import post_many_at_once

    settings.WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY = 5
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # behind nginx: the source comes from X-Forwarded-For

    results = post_many_at_once(
        threaded_server + "/tv-webhook",
        alert_body(passphrase="forged"),
        30,
        headers=lambda i: {"X-Forwarded-For": f"198.51.100.{i + 1}"},
    )

    assert [code for code, _ in results] == [401] * 30
    assert WebhookRejection.objects.exclude(source="*").count() <= 5
    assert WebhookRejection.objects.count() <= 5 + 1
    assert sum(WebhookRejection.objects.values_list("count", flat=True)) == 30
    assert Signal.objects.count() == 0
