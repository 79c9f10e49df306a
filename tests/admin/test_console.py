"""The admin as operator console: dashboard, kill switches with confirmation, audit,
write-only secrets, signal pages, bounded queries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from execution.credentials import decrypt
from execution.models import ExchangeAccount, Order
from signals.models import Signal
from strategies.models import AuditEntry, Strategy, TradingControl
from tests.admin.conftest import executed_signal
from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db


def _strategy_post_data(strategy: Strategy, **overrides) -> dict:
    data = {
        "strategy_id": strategy.strategy_id,
        "name": strategy.name,
        "description": "",
        "enabled": "on",
        "account": strategy.account_id or "",
        "symbol_override": "",
        "sizing_mode": strategy.sizing_mode,
        "size_value": "" if strategy.size_value is None else str(strategy.size_value),
        "leverage": "",
        "max_position": "",
        "order_type": strategy.order_type,
        "limit_offset_bps": "0",
        "max_slippage_bps": "50",
        "limit_timeout_seconds": "60",
        "on_opposite": strategy.on_opposite,
        "allowed_actions": list(strategy.allowed_actions),
        "max_signal_age_seconds": "",
        "dedup_window_seconds": "60",
        "expected_interval_minutes": "",
        "new_passphrase": "",
    }
    # The account subscriptions table, as the page sends it (each existing row unchanged).
    subs = list(strategy.subscriptions.all()) if strategy.pk else []
    data.update({"subscriptions-TOTAL_FORMS": str(len(subs)), "subscriptions-INITIAL_FORMS": str(len(subs))})
    for i, sub in enumerate(subs):
        data.update(
            {
                f"subscriptions-{i}-id": sub.pk,
                f"subscriptions-{i}-strategy": strategy.pk,
                f"subscriptions-{i}-account": sub.account_id,
                f"subscriptions-{i}-enabled": "on" if sub.enabled else "",
                f"subscriptions-{i}-sizing_mode": sub.sizing_mode,
            }
        )
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- Dashboard -------------------------------------------------------------------------


def test_dashboard_shows_each_strategy_with_state_activity_and_latency_percentiles(admin_client, strategy):
    for sent_ms in (100, 200, 300):
        executed_signal(strategy, sent_ms=sent_ms, fill_ms=sent_ms + 400)
    live_account = ExchangeAccountFactory(mode=ExchangeAccount.Mode.TESTNET)
    StrategyFactory(strategy_id="halted-eth", account=live_account, halted=True)

    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    rows = {row.strategy.strategy_id: row for row in response.context["rows"]}
    trend = rows["trend-btc"]
    assert trend.state == "paper"
    assert (trend.signals, trend.orders, trend.fills) == (3, 3, 3)
    assert trend.sent_p50_ms == pytest.approx(200, abs=1)
    assert trend.fill_p50_ms == pytest.approx(600, abs=1)
    assert trend.sent_p95_ms == pytest.approx(290, abs=1)
    assert rows["halted-eth"].state == "halted"
    html = response.content.decode()
    assert "200 ms / 290 ms" in html
    assert "<svg" in html and "cdn" not in html.lower()


def test_dashboard_attention_block_lists_unknown_orders_stuck_signals_and_silent_strategies(admin_client, strategy):
    signal = executed_signal(strategy)
    Order.objects.filter(signal=signal).update(status=Order.Status.UNKNOWN)
    SignalFactory(strategy=strategy, status=Signal.Status.ACCEPTED, received_at=timezone.now() - timedelta(minutes=3))
    silent = StrategyFactory(strategy_id="silent-one", expected_interval_minutes=15)
    SignalFactory(strategy=silent, status=Signal.Status.EXECUTED, received_at=timezone.now() - timedelta(hours=2))

    response = admin_client.get(reverse("admin:index"))

    titles = [item.title for item in response.context["attention"]]
    assert any("unknown state" in t for t in titles), titles
    assert any("waiting more than 60 s" in t for t in titles), titles
    assert "silent-one is silent" in titles
    assert "trend-btc is silent" not in titles


def test_dashboard_shows_open_position_with_unrealised_pnl_at_last_alert_price(admin_client, strategy):
    from execution.models import Position

    SignalFactory(strategy=strategy, price=Decimal("66000"), status=Signal.Status.EXECUTED)
    Position.objects.create(
        account=strategy.account, strategy=strategy, symbol="BTC/USDT:USDT", qty=Decimal("0.5"), avg_price=65000
    )
    response = admin_client.get(reverse("admin:index"))
    row = next(r for r in response.context["rows"] if r.strategy == strategy)
    assert row.positions[0]["unrealised"] == Decimal("500")
    assert "500.00" in response.content.decode()


# --- Kill switches ----------------------------------------------------------------------


def test_strategy_kill_switch_asks_for_confirmation_before_engaging(admin_client, strategy):
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"}) + f"?ids={strategy.pk}"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "Stop trading for strategy trend-btc?" in page.content.decode()
    assert 'name="cancel_orders"' in page.content.decode()
    assert 'name="flatten"' in page.content.decode()
    strategy.refresh_from_db()
    assert not strategy.halted

    # A POST without the confirmation field changes nothing either.
    admin_client.post(url, {"ids": str(strategy.pk)})
    strategy.refresh_from_db()
    assert not strategy.halted

    response = admin_client.post(url, {"ids": str(strategy.pk), "confirm": "yes", "reason": "CPI release"})
    assert response.status_code == 302
    strategy.refresh_from_db()
    assert strategy.halted and strategy.halted_by == "admin" and strategy.halt_reason == "CPI release"
    entry = AuditEntry.objects.get(strategy=strategy, field="halted")
    assert (entry.actor, entry.old_value, entry.new_value, entry.note) == ("admin", "False", "True", "CPI release")


def test_strategy_kill_switch_release_needs_its_own_confirmation(admin_client, strategy):
    Strategy.objects.filter(pk=strategy.pk).update(halted=True)
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "release"}) + f"?ids={strategy.pk}"
    page = admin_client.get(url)
    assert "Resume trading for strategy trend-btc?" in page.content.decode()
    strategy.refresh_from_db()
    assert strategy.halted

    admin_client.post(url, {"ids": str(strategy.pk), "confirm": "yes", "reason": "checked"})
    strategy.refresh_from_db()
    assert not strategy.halted
    assert AuditEntry.objects.filter(strategy=strategy, field="halted", new_value="False").exists()


def test_engaged_strategy_switch_blocks_signals_already_queued_from_the_confirmation_count(admin_client, strategy):
    SignalFactory(strategy=strategy, status=Signal.Status.ACCEPTED)
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"}) + f"?ids={strategy.pk}"
    page = admin_client.get(url)
    assert page.context["queued"] == 1
    assert "1 waiting now" in page.content.decode()


def test_global_kill_switch_engages_and_releases_with_audit(admin_client, db):
    url = reverse("admin:killswitch", kwargs={"scope": "global", "verb": "engage"})
    assert "ALL trading" in admin_client.get(url).content.decode()
    admin_client.post(url, {"confirm": "yes", "reason": "going to sleep"})
    assert TradingControl.is_halted()
    dashboard = admin_client.get(reverse("admin:index")).content.decode()
    assert "Global kill switch engaged" in dashboard and "TRADING HALTED" in dashboard

    admin_client.post(reverse("admin:killswitch", kwargs={"scope": "global", "verb": "release"}), {"confirm": "yes"})
    assert not TradingControl.is_halted()
    assert list(AuditEntry.objects.filter(target_type="global").values_list("new_value", flat=True)) == [
        "False",
        "True",
    ]


def test_account_kill_switch_from_the_list_action_goes_through_confirmation(admin_client, strategy):
    account = strategy.account
    response = admin_client.post(
        reverse("admin:execution_exchangeaccount_changelist"),
        {"action": "engage_kill_switch", "_selected_action": [account.pk]},
    )
    assert response.status_code == 302 and "/killswitch/account/engage/" in response["Location"]
    account.refresh_from_db()
    assert not account.halted
    confirm = admin_client.get(response["Location"])
    assert "trend-btc" in confirm.content.decode()  # the strategies it stops are named
    admin_client.post(response["Location"], {"ids": str(account.pk), "confirm": "yes"})
    account.refresh_from_db()
    assert account.halted
    assert AuditEntry.objects.filter(target_type="account", target_id=account.label).exists()


def test_kill_switch_needs_change_permission(client, strategy, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(viewer)
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"}) + f"?ids={strategy.pk}"
    assert client.post(url, {"ids": str(strategy.pk), "confirm": "yes"}).status_code == 403
    strategy.refresh_from_db()
    assert not strategy.halted


def test_kill_switch_refuses_to_redirect_off_site(admin_client, strategy):
    url = reverse("admin:killswitch", kwargs={"scope": "strategy", "verb": "engage"})
    response = admin_client.post(url, {"ids": str(strategy.pk), "confirm": "yes", "next": "https://evil.example/"})
    assert response["Location"] == reverse("admin:index")


# --- Strategy settings ------------------------------------------------------------------


def test_editing_a_strategy_setting_is_audited_and_shown_on_its_page(admin_client, strategy):
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    response = admin_client.post(url, _strategy_post_data(strategy, max_slippage_bps="25"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = AuditEntry.objects.get(strategy=strategy, field="max_slippage_bps")
    assert (entry.actor, entry.old_value, entry.new_value) == ("admin", "50.00", "25")
    page = admin_client.get(url).content.decode()
    assert "Change history" in page and "max_slippage_bps" in page


def test_strategy_passphrase_is_write_only_and_hashed(admin_client, strategy):
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    secret = "correct-horse-battery-staple"
    admin_client.post(url, _strategy_post_data(strategy, new_passphrase=secret))
    strategy.refresh_from_db()
    assert strategy.check_passphrase(secret)
    assert secret not in strategy.passphrase_hash
    page = admin_client.get(url).content.decode()
    assert secret not in page and strategy.passphrase_hash not in page
    assert "own passphrase (hashed)" in page
    entry = AuditEntry.objects.get(strategy=strategy, field="passphrase_hash")
    assert (entry.old_value, entry.new_value) == ("unset", "changed")

    # Saving again with the field left empty keeps it.
    admin_client.post(url, _strategy_post_data(strategy, name="renamed"))
    strategy.refresh_from_db()
    assert strategy.check_passphrase(secret)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"sizing_mode": "percent_equity", "size_value": "150"}, "size_value", "at most 100"),
        ({"sizing_mode": "fixed_quote", "size_value": ""}, "size_value", "needs a size value"),
        ({"symbol_override": "BTC/USDT"}, "symbol_override", "did you mean BTC/USDT:USDT"),
        ({"symbol_override": "BTCUSDT.P"}, "symbol_override", "ccxt form"),
        ({"leverage": "150"}, "leverage", "at most 100x"),
        ({"order_type": "marketable_limit", "max_slippage_bps": "0"}, "max_slippage_bps", "above zero"),
        ({"allowed_actions": []}, "allowed_actions", "at least one"),
        (
            {"sizing_mode": "fixed_base", "size_value": "2", "max_position": "1"},
            "size_value",
            "exceed the maximum position",
        ),
    ],
)
def test_strategy_form_catches_mistakes_before_a_trade_does(admin_client, strategy, overrides, field, message):
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    data = _strategy_post_data(strategy, **overrides)
    if overrides.get("allowed_actions") == []:
        data.pop("allowed_actions")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, [])), errors
    assert not AuditEntry.objects.filter(strategy=strategy).exists()


def test_leverage_on_a_spot_account_is_refused(admin_client):
    spot = ExchangeAccountFactory(market_type=ExchangeAccount.MarketType.SPOT)
    strategy = StrategyFactory(account=spot)
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    response = admin_client.post(url, _strategy_post_data(strategy, leverage="5"))
    assert "trades spot" in " ".join(response.context["adminform"].form.errors["leverage"])


def test_strategy_page_offers_the_alert_message_and_webhook_url_with_copy_buttons(admin_client, strategy):
    import json

    page = admin_client.get(reverse("admin:strategies_strategy_change", args=[strategy.pk]))
    html = page.content.decode()
    assert "http://testserver/tv-webhook" in html
    template = json.loads(page.context["alert_templates"][0]["text"])
    assert template["strategy_id"] == "trend-btc"
    assert template["action"] == "{{strategy.order.action}}"
    assert template["price"] == "{{close}}"
    assert html.count('class="tv-copy"') == 3


def test_send_test_signal_records_a_paper_test_signal(admin_client, strategy):
    response = admin_client.post(reverse("admin:strategies_strategy_send_test", args=[strategy.pk]))
    assert response.status_code == 302
    signal = Signal.objects.get(strategy=strategy)
    assert signal.is_test and signal.status == Signal.Status.ACCEPTED
    assert admin_client.get(reverse("admin:strategies_strategy_send_test", args=[strategy.pk])).status_code == 405


# --- Accounts ---------------------------------------------------------------------------


def _account_post_data(account: ExchangeAccount, **overrides) -> dict:
    data = {
        "label": account.label,
        "exchange": account.exchange,
        "mode": account.mode,
        "market_type": account.market_type,
        "position_mode": account.position_mode,
        "margin_mode": account.margin_mode,
        "base_url": "",
        "max_orders_per_second": "10",
        "paper_fee_bps": "5.5",
        "paper_slippage_bps": "2",
        "paper_quote_currency": "USDT",
        "paper_starting_balance": "10000",
        "api_key": "",
        "api_secret": "",
        "api_password": "",
    }
    data.update(overrides)
    return data


def test_account_credentials_are_write_only_and_encrypted(admin_client):
    account = ExchangeAccountFactory(label="bybit-test")
    url = reverse("admin:execution_exchangeaccount_change", args=[account.pk])
    response = admin_client.post(
        url,
        _account_post_data(account, mode="testnet", api_key="KEY-abc123", api_secret="SECRET-xyz789"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    account.refresh_from_db()
    assert decrypt(account.api_key_enc) == "KEY-abc123"
    assert "SECRET-xyz789" not in account.api_secret_enc
    page = admin_client.get(url).content.decode()
    assert "KEY-abc123" not in page and "SECRET-xyz789" not in page and account.api_key_enc not in page
    assert "stored encrypted: key, secret" in page

    # Saving with the fields empty keeps the stored credentials.
    admin_client.post(url, _account_post_data(account, mode="testnet", label="bybit-renamed"))
    account.refresh_from_db()
    assert account.label == "bybit-renamed" and decrypt(account.api_secret_enc) == "SECRET-xyz789"


def test_testnet_account_without_credentials_is_refused(admin_client):
    account = ExchangeAccountFactory()
    url = reverse("admin:execution_exchangeaccount_change", args=[account.pk])
    response = admin_client.post(url, _account_post_data(account, mode="testnet"))
    assert response.status_code == 200
    assert "needs an API key and secret" in str(response.context["adminform"].form.errors)


# --- Signals ----------------------------------------------------------------------------


def test_signal_page_shows_the_timeline_with_milliseconds_orders_and_fills(admin_client, strategy):
    signal = executed_signal(strategy, sent_ms=120, fill_ms=300)
    page = admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).content.decode()
    assert 'id="tv-timeline"' in page
    for step in ("Received", "Committed", "Execution started", "Order sent", "Acknowledged", "Filled"):
        assert step in page
    assert "+110 ms" in page  # started (10 ms) -> sent (120 ms)
    assert "Received → filled: <strong>300 ms</strong>" in page
    assert f"tv{signal.pk}x0" in page  # the order inline
    assert f"t{signal.pk}" in page  # the fill
    assert "application/json" in page and "&quot;passphrase&quot;: &quot;***&quot;" in page


def test_rejected_signal_explains_the_reason_in_trader_words(admin_client, strategy):
    signal = SignalFactory(
        strategy=strategy,
        status=Signal.Status.REJECTED,
        reason="not JSON",
        raw_body="action: buy,",
        content_type="text/plain",
    )
    page = admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).content.decode()
    assert "trailing comma" in page
    assert "text/plain" in page


def test_signal_search_finds_by_client_order_id_ticker_and_id(admin_client, strategy):
    target = executed_signal(strategy, client_order_id="tvABC123xyz")
    other = SignalFactory(strategy=strategy, ticker="ETHUSDT.P")
    url = reverse("admin:signals_signal_changelist")
    by_coid = admin_client.get(url, {"q": "tvABC123xyz"})
    assert [s.pk for s in by_coid.context["cl"].result_list] == [target.pk]
    by_ticker = admin_client.get(url, {"q": "ethusdt.p"})
    assert [s.pk for s in by_ticker.context["cl"].result_list] == [other.pk]
    by_id = admin_client.get(url, {"q": str(other.pk)})
    assert other.pk in [s.pk for s in by_id.context["cl"].result_list]


def test_signal_list_filters_and_colour_codes_status(admin_client, strategy):
    SignalFactory(strategy=strategy, status=Signal.Status.FAILED, action="sell")
    SignalFactory(strategy=strategy, status=Signal.Status.EXECUTED, action="buy")
    url = reverse("admin:signals_signal_changelist")
    response = admin_client.get(url, {"status__exact": "failed", "action": "sell", "exchange": "BYBIT"})
    assert [s.status for s in response.context["cl"].result_list] == ["failed"]
    assert 'class="tv-status tv-s-failed"' in response.content.decode()


def test_signals_are_evidence_and_cannot_be_edited_or_deleted(admin_client, strategy):
    signal = SignalFactory(strategy=strategy)
    url = reverse("admin:signals_signal_change", args=[signal.pk])
    admin_client.post(url, {"status": "executed"})
    signal.refresh_from_db()
    assert signal.status == Signal.Status.ACCEPTED
    assert admin_client.post(reverse("admin:signals_signal_delete", args=[signal.pk])).status_code == 403


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:signals_signal_changelist",
        "admin:execution_order_changelist",
        "admin:execution_fill_changelist",
        "admin:strategies_auditentry_changelist",
    ],
)
def test_list_pages_run_a_bounded_number_of_queries(admin_client, strategy, url_name, django_assert_max_num_queries):
    for _ in range(3):
        executed_signal(strategy)
    with django_assert_max_num_queries(12) as few:
        assert admin_client.get(reverse(url_name)).status_code == 200
    for _ in range(30):
        executed_signal(strategy)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(reverse(url_name)).status_code == 200


def test_signal_detail_runs_a_bounded_number_of_queries(admin_client, strategy, django_assert_max_num_queries):
    signal = executed_signal(strategy)
    with django_assert_max_num_queries(15):
        assert admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).status_code == 200


def test_dashboard_queries_do_not_grow_with_strategies_or_history(
    admin_client, strategy, django_assert_max_num_queries
):
    executed_signal(strategy)
    with django_assert_max_num_queries(30) as one:
        assert admin_client.get(reverse("admin:index")).status_code == 200
    for i in range(5):
        other = StrategyFactory(strategy_id=f"s{i}")
        for _ in range(3):
            executed_signal(other)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert admin_client.get(reverse("admin:index")).status_code == 200
