"""Halted or disabled strategies still have their alerts recorded, as `blocked`, and never
queued; stale entries are refused while exits still pass. Accepted alerts are queued with
nothing but the signal id (read back from the real Redis broker)."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings as django_settings

from execution.models import ExchangeAccount
from signals.models import Signal
from strategies.models import TradingControl
from strategies.services import account_halt, global_halt, strategy_halt
from tests.factories import StrategyFactory
from tvtrader.redisconn import key

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker():
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


def queued_signal_ids(broker) -> list:
    messages = [json.loads(m) for m in broker.lrange(key("orders"), 0, -1)]
    assert all(m["headers"]["task"] == "execution.execute_signal" for m in messages)
    return [json.loads(base64.b64decode(m["body"]))[0] for m in messages]


@pytest.fixture
def demo():
    return StrategyFactory(strategy_id="demo")


@pytest.mark.django_db(transaction=True)
def test_accepted_alert_is_queued_with_only_its_signal_id(post_alert, demo, broker):
    # A real commit (not the test's wrapping transaction), so the wake-up is really sent.
    response = post_alert()

    assert queued_signal_ids(broker) == [[response.json()["signal_id"]]]


@pytest.mark.parametrize("switch", ["strategy", "global", "account", "disabled"])
@pytest.mark.django_db(transaction=True)
def test_alert_for_a_halted_strategy_is_recorded_blocked_and_never_queued(post_alert, demo, broker, switch):
    if switch == "strategy":
        strategy_halt(strategy=demo, actor="ops", reason="drawdown")
    elif switch == "global":
        global_halt(actor="ops", reason="CPI")
    elif switch == "account":
        account_halt(account=demo.account, actor="ops", reason="api key rotated")
    else:
        demo.enabled = False
        demo.save()

    response = post_alert()

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "blocked"
    assert switch.rstrip("d") in body["reason"] or "kill switch" in body["reason"]
    signal = Signal.objects.get(pk=body["signal_id"])
    assert signal.status == Signal.Status.BLOCKED
    assert signal.committed_at is not None
    assert queued_signal_ids(broker) == []


@pytest.mark.django_db(transaction=True)
def test_sweeper_never_requeues_a_blocked_signal(post_alert, demo, broker):
    from signals.outbox import signals_sweep

    strategy_halt(strategy=demo, actor="ops")
    post_alert()

    assert signals_sweep(older_than_seconds=0) == 0
    assert queued_signal_ids(broker) == []


def test_global_switch_released_lets_alerts_through_again(post_alert, demo):
    global_halt(actor="ops")
    assert post_alert().json()["status"] == "blocked"
    TradingControl.objects.filter(pk=1).update(halted=False)
    assert post_alert(bar_time="2026-11-24T03:00:00Z").json()["status"] == "accepted"


def test_account_switch_only_blocks_strategies_on_that_account(post_alert, demo):
    other = StrategyFactory(strategy_id="other")
    account_halt(account=ExchangeAccount.objects.get(pk=demo.account_id), actor="ops")

    assert post_alert().json()["status"] == "blocked"
    assert post_alert(strategy_id=other.strategy_id).json()["status"] == "accepted"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def strict():
    return StrategyFactory(strategy_id="demo", max_signal_age_seconds=60)


def test_stale_entry_is_recorded_and_refused(post_alert, strict, broker):
    ten_minutes_ago = iso(datetime.now(UTC) - timedelta(minutes=10))
    response = post_alert(action="buy", fired_at=ten_minutes_ago)

    assert response.status_code == 422
    assert response.json()["status"] == "rejected"
    assert "stale" in response.json()["reason"]
    assert Signal.objects.get().status == Signal.Status.REJECTED
    assert queued_signal_ids(broker) == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("action", ["close_long", "close_short", "close_all"])
def test_stale_exit_is_still_let_through(post_alert, strict, action, broker):
    ten_minutes_ago = iso(datetime.now(UTC) - timedelta(minutes=10))
    response = post_alert(action=action, fired_at=ten_minutes_ago)

    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert queued_signal_ids(broker) == [[response.json()["signal_id"]]]


def test_signal_age_falls_back_to_bar_time(post_alert, strict):
    assert post_alert(bar_time=iso(datetime.now(UTC) - timedelta(hours=1))).status_code == 422
    assert post_alert(bar_time=iso(datetime.now(UTC) - timedelta(seconds=5))).status_code == 202


def test_fresh_entry_is_accepted(post_alert, strict):
    assert post_alert(fired_at=iso(datetime.now(UTC) - timedelta(seconds=2))).status_code == 202


def test_with_the_age_limit_switched_off_old_alerts_are_accepted(post_alert, demo):
    demo.max_signal_age_seconds = 0
    demo.save()
    assert post_alert(fired_at="2020-01-01T00:00:00Z").status_code == 202


def test_action_the_strategy_does_not_allow_is_rejected(post_alert, demo):
    demo.allowed_actions = ["buy", "close_all"]
    demo.save()

    response = post_alert(action="sell")
    assert response.status_code == 422
    assert "not allowed" in response.json()["reason"]


# --- the default age limit and times in the future --------------------------------------------


def test_by_default_an_entry_fired_long_ago_is_refused_as_stale(post_alert, demo, settings):
    assert demo.max_signal_age_seconds is None
    settings.SIGNAL_MAX_AGE_SECONDS = 300
    response = post_alert(fired_at=iso(datetime.now(UTC) - timedelta(minutes=10)))

    assert response.status_code == 422
    assert "stale alert" in response.json()["reason"] and "limit 300 s" in response.json()["reason"]
    assert post_alert(fired_at=iso(datetime.now(UTC) - timedelta(seconds=20)), order_id="2").status_code == 202


def test_the_default_limit_does_not_count_from_the_bar_open_time(post_alert, demo):
    # {{time}} is when the bar opened: hours ago on a 4h chart, with nothing late about it.
    assert post_alert(bar_time=iso(datetime.now(UTC) - timedelta(hours=4))).status_code == 202


@pytest.mark.parametrize("field", ["fired_at", "bar_time"])
def test_an_entry_from_the_future_is_refused_with_a_clear_reason(post_alert, demo, settings, field):
    settings.SIGNAL_CLOCK_SKEW_SECONDS = 60
    response = post_alert(**{field: iso(datetime.now(UTC) + timedelta(minutes=10))})

    assert response.status_code == 422
    reason = response.json()["reason"]
    assert f"{field} is" in reason and "in the future" in reason and "tolerance 60 s" in reason
    assert Signal.objects.get().status == Signal.Status.REJECTED


def test_a_time_just_ahead_within_the_clock_skew_tolerance_is_fine(post_alert, demo):
    assert post_alert(fired_at=iso(datetime.now(UTC) + timedelta(seconds=20))).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_an_exit_from_the_future_still_closes(post_alert, demo, broker):
    response = post_alert(action="close_all", fired_at=iso(datetime.now(UTC) + timedelta(hours=1)))

    assert response.status_code == 202
    assert queued_signal_ids(broker) == [[response.json()["signal_id"]]]
