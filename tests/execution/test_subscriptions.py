"""Subscriptions on paper accounts, in-process: the migration of single-account strategies,
each subscription's own switch and settings, and what the timeline, dashboard and API show."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.apps import apps
from django.urls import reverse

from execution.models import Order, Position
from execution.services import signal_execute
from signals.models import Signal
from strategies.dashboard import strategy_rows
from strategies.models import AuditEntry, Subscription
from strategies.services import account_halt
from strategies.subscriptions import subscriptions_sync
from tests.api.conftest import api_user, control_api, control_token, read_api, read_token  # noqa: F401
from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db
BTC = "BTC/USDT:USDT"


def _fan(strategy, *extra: dict) -> list:
    Subscription.objects.get_or_create(strategy=strategy, account=strategy.account)
    accounts = []
    for fields in extra:
        account = ExchangeAccountFactory()
        Subscription.objects.create(strategy=strategy, account=account, **fields)
        accounts.append(account)
    subscriptions_sync(strategy=strategy)
    return accounts


def _run(strategy, **fields) -> Signal:
    signal = SignalFactory(strategy=strategy, **fields)
    signal_execute(signal_id=signal.pk)  # in-process: the children run one after the other
    signal.refresh_from_db()
    return signal


def test_the_migration_gives_each_single_account_strategy_one_subscription_and_changes_nothing():
    strategy = StrategyFactory(strategy_id="demo")
    no_account = StrategyFactory(account=None)
    migration = importlib.import_module("strategies.migrations.0005_subscriptions_from_accounts")
    migration.forwards(apps, None)
    migration.forwards(apps, None)  # idempotent
    [sub] = Subscription.objects.filter(strategy=strategy)
    assert sub.account_id == strategy.account_id and not sub.overrides
    assert not Subscription.objects.filter(strategy=no_account).exists()
    assert subscriptions_sync(strategy=strategy) is False  # runs directly, as before

    signal = _run(strategy)
    assert signal.status == Signal.Status.EXECUTED and not signal.children.exists()
    from django.utils.http import int_to_base36

    assert Order.objects.get(signal=signal).client_order_id.endswith(f"{int_to_base36(signal.pk)}l1")


def test_each_subscription_sizes_on_its_own_and_keeps_its_own_position():
    strategy = StrategyFactory(strategy_id="demo")
    double, fixed = _fan(
        strategy, {"sizing_mode": "multiplier", "size_value": 2}, {"sizing_mode": "fixed_quote", "size_value": 650}
    )
    parent = _run(strategy, volume=Decimal("0.01"), price=Decimal("65000"))
    assert parent.status == Signal.Status.FANNED_OUT
    assert sorted(Position.objects.filter(strategy=strategy).values_list("qty", flat=True)) == [
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal("0.02"),
    ]
    assert Position.objects.get(strategy=strategy, account=double, symbol=BTC).qty == Decimal("0.02")
    assert Position.objects.get(strategy=strategy, account=fixed, symbol=BTC).qty == Decimal("0.01")
    assert Signal.objects.filter(parent=parent).count() == 3


def test_a_halted_or_disabled_subscription_stops_its_account_only():
    strategy = StrategyFactory(strategy_id="demo")
    halted, disabled = _fan(strategy, {}, {})
    Subscription.objects.filter(account=halted).update(halted=True)
    Subscription.objects.filter(account=disabled).update(enabled=False)
    subscriptions_sync(strategy=strategy)
    parent = _run(strategy)
    kids = {k.subscription.account_id: k for k in parent.children.select_related("subscription")}
    assert set(kids) == {strategy.account_id, halted.pk}  # a disabled subscription gets no run
    assert kids[strategy.account_id].status == Signal.Status.EXECUTED
    assert kids[halted.pk].status == Signal.Status.BLOCKED
    assert "subscription" in kids[halted.pk].reason and not Order.objects.filter(signal=kids[halted.pk]).exists()


def test_an_account_switch_stops_that_account_only_and_the_alert_is_still_taken(post_alert):
    strategy = StrategyFactory(strategy_id="demo")
    (other,) = _fan(strategy, {})
    account_halt(account=strategy.account, actor="alice")
    answer = post_alert(action="buy")
    assert answer.status_code == 202, answer.content
    signal_execute(signal_id=answer.json()["signal_id"])
    kids = {k.subscription.account_id: k for k in Signal.objects.filter(parent_id=answer.json()["signal_id"])}
    assert kids[strategy.account_id].status == Signal.Status.BLOCKED
    assert kids[other.pk].status == Signal.Status.EXECUTED


def test_timeline_dashboard_and_api_show_each_account(admin_client, read_api):  # noqa: F811
    strategy = StrategyFactory(strategy_id="demo")
    (other,) = _fan(strategy, {"sizing_mode": "fixed_base", "size_value": "0.005"})
    parent = _run(strategy)

    page = admin_client.get(reverse("admin:signals_signal_change", args=[parent.pk])).content.decode()
    assert 'id="tv-accounts"' in page and other.label in page and strategy.account.label in page
    assert "buy 0.005 BTC/USDT:USDT → filled" in page

    [row] = [r for r in strategy_rows()[0] if r.strategy.pk == strategy.pk]
    assert {p["position"].account.label for p in row.positions} == {other.label, strategy.account.label}

    body = read_api.get(f"/api/strategies/{strategy.strategy_id}/").json()
    subs = {s["account"]: s for s in body["subscriptions"]}
    assert subs[other.label]["positions"][0]["qty"] == "0.005000000000"
    assert subs[other.label]["sizing_mode"] == "fixed_base"
    detail = read_api.get(f"/api/signals/{parent.pk}/").json()
    assert detail["status"] == "fanned_out"
    assert {a["account"]: a["orders"][0]["filled_qty"] for a in detail["accounts"]} == {
        strategy.account.label: "0.010000000000",
        other.label: "0.005000000000",
    }


def _admin_post_data(admin_client, strategy, own, other, **second) -> dict:
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in ("account",)}
    data.update(
        {
            "account": strategy.account_id,
            "allowed_actions": strategy.allowed_actions,
            "subscriptions-TOTAL_FORMS": "2",
            "subscriptions-INITIAL_FORMS": "1",
            "subscriptions-0-id": own.pk,
            "subscriptions-0-strategy": strategy.pk,
            "subscriptions-0-account": strategy.account_id,
            "subscriptions-0-enabled": "on",
            "subscriptions-1-strategy": strategy.pk,
            "subscriptions-1-account": other.pk,
            "subscriptions-1-enabled": "on",
        }
    )
    data.update({f"subscriptions-1-{k}": v for k, v in second.items()})
    return data


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"sizing_mode": "multiplier"}, "multiplier"),
        ({"sizing_mode": "fixed_base"}, "size value above zero"),
        ({"sizing_mode": "percent_equity", "size_value": "150"}, "at most 100"),
        ({"leverage": "150"}, "at most 100x"),
    ],
)
def test_a_subscription_the_validator_refuses_is_not_saved(admin_client, second, message):
    strategy = StrategyFactory(strategy_id="demo")
    subscriptions_sync(strategy=strategy)
    own = Subscription.objects.get(strategy=strategy)
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    response = admin_client.post(url, _admin_post_data(admin_client, strategy, own, ExchangeAccountFactory(), **second))
    assert response.status_code == 200
    assert message in str(response.context["inline_admin_formsets"][0].formset.errors)
    assert Subscription.objects.filter(strategy=strategy).count() == 1


def test_subscriptions_edited_in_the_admin_are_audited_and_fan_out(admin_client):
    strategy = StrategyFactory(strategy_id="demo")
    subscriptions_sync(strategy=strategy)
    own = Subscription.objects.get(strategy=strategy)
    other = ExchangeAccountFactory()
    url = reverse("admin:strategies_strategy_change", args=[strategy.pk])
    form = admin_client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k not in ("account",)}
    data.update(
        {
            "account": strategy.account_id,
            "allowed_actions": strategy.allowed_actions,
            "subscriptions-TOTAL_FORMS": "2",
            "subscriptions-INITIAL_FORMS": "1",
            "subscriptions-0-id": own.pk,
            "subscriptions-0-strategy": strategy.pk,
            "subscriptions-0-account": strategy.account_id,
            "subscriptions-0-enabled": "on",
            "subscriptions-0-halted": "on",
            "subscriptions-1-strategy": strategy.pk,
            "subscriptions-1-account": other.pk,
            "subscriptions-1-enabled": "on",
            "subscriptions-1-sizing_mode": "multiplier",
            "subscriptions-1-size_value": "3",
        }
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    strategy.refresh_from_db()
    assert strategy.fans_out
    own.refresh_from_db()
    assert own.halted and own.halted_by == "admin"
    fields = set(AuditEntry.objects.filter(target_type="subscription").values_list("field", flat=True))
    assert {"created", "halted"} <= fields


def test_an_operators_flatten_closes_the_strategy_on_every_account():
    from execution.services import strategy_flatten
    from strategies.services import strategy_halt

    strategy = StrategyFactory(strategy_id="demo")
    _fan(strategy, {"sizing_mode": "multiplier", "size_value": 2})
    _run(strategy)
    assert Position.objects.filter(strategy=strategy).exclude(qty=0).count() == 2
    strategy_halt(strategy=strategy, actor="alice")
    strategy.refresh_from_db()
    flatten = strategy_flatten(strategy=strategy, actor="alice")
    signal_execute(signal_id=flatten.pk)
    kids = list(Signal.objects.filter(parent=flatten))
    assert len(kids) == 2 and all(k.status == Signal.Status.EXECUTED for k in kids), [k.reason for k in kids]
    assert not Position.objects.filter(strategy=strategy).exclude(qty=0).exists()


def test_a_subscriptions_switch_through_the_api_is_audited_and_stops_that_account_only(control_api):  # noqa: F811
    strategy = StrategyFactory(strategy_id="demo")
    (other,) = _fan(strategy, {})
    sub = Subscription.objects.get(strategy=strategy, account=other)
    url = f"/api/strategies/{strategy.strategy_id}/subscriptions/{sub.pk}/kill/"
    answer = control_api.post(url, {"reason": "exchange maintenance"}, format="json")
    assert answer.json() == {"changed": True, "halted": True}
    audit = AuditEntry.objects.get(target_type="subscription", field="halted")
    assert audit.note == "exchange maintenance" and "my-bot" in audit.actor
    parent = _run(strategy)
    kids = {k.subscription.account_id: k.status for k in parent.children.select_related("subscription")}
    assert kids == {strategy.account_id: Signal.Status.EXECUTED, other.pk: Signal.Status.BLOCKED}
    assert control_api.post(url.replace("/kill/", "/resume/")).json() == {"changed": True, "halted": False}
    assert control_api.post(f"/api/strategies/{strategy.strategy_id}/subscriptions/999999/kill/").status_code == 404


def test_each_accounts_outcome_is_notified_with_its_account():
    from tvtrader.ops.notifications import signal_outcome_text

    strategy = StrategyFactory(strategy_id="demo")
    (other,) = _fan(strategy, {})
    parent = _run(strategy)
    child = parent.children.get(subscription__account=other)
    event, text = signal_outcome_text(child)
    assert event == "signal_executed" and text.startswith(f"✅ demo on {other.label}: buy BTCUSDT.P executed")


def test_the_dashboard_shows_who_engaged_a_switch_and_why(admin_client):
    from execution.engine.breakers import trip

    strategy = StrategyFactory(strategy_id="demo")
    trip(scope="strategy", owner=strategy, breaker="daily_loss", reason="breaker: realised loss today 20.00")
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "strategy kill switch by breaker:daily_loss: breaker: realised loss today 20.00" in page
