"""The webhook's hot path stays two statements: one strategy query that also reads the three
kill switches, and one autocommitted INSERT (speed itself is measured in bench/intake.py)."""

import pytest

from signals.models import Signal
from strategies.services import account_halt, global_halt, strategy_halt
from tests.factories import StrategyFactory


@pytest.mark.django_db(transaction=True)
def test_an_accepted_alert_costs_one_select_and_one_insert(post_alert, django_assert_num_queries):
    StrategyFactory(strategy_id="demo")

    with django_assert_num_queries(2) as captured:
        response = post_alert()

    assert response.status_code == 202
    select, insert = (q["sql"] for q in captured.captured_queries)
    assert select.startswith("SELECT") and "tradingcontrol" in select and "exchangeaccount" in select
    assert insert.startswith("INSERT INTO")


@pytest.mark.django_db(transaction=True)
def test_kill_switches_are_read_fresh_on_every_alert(post_alert):
    StrategyFactory(strategy_id="demo")
    assert post_alert(bar_time="2026-11-24T01:00:00Z").json()["status"] == "accepted"

    global_halt(actor="ops")
    assert post_alert(bar_time="2026-11-24T02:00:00Z").json()["status"] == "blocked"


@pytest.mark.django_db
@pytest.mark.parametrize("switch", ["strategy", "account"])
def test_the_blocked_reason_names_the_switch(post_alert, switch):
    strategy = StrategyFactory(strategy_id="demo")
    if switch == "strategy":
        strategy_halt(strategy=strategy, actor="ops")
    else:
        account_halt(account=strategy.account, actor="ops")

    reason = post_alert().json()["reason"]
    assert reason == (
        "blocked: this strategy's kill switch is engaged"
        if switch == "strategy"
        else f"blocked: the kill switch of account {strategy.account.label} is engaged"
    )
    assert Signal.objects.get().reason == reason
