"""What the console shows is readable: numbers as people write them, times with seconds and
time zone, charts scaled to their data over the period their title names, trader pages
first, no dead links, a new strategy that saves, and no latency made up by rounding."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from strategies.models import ACTIONS, Strategy
from tests.admin.conftest import executed_signal

pytestmark = pytest.mark.django_db

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def test_prices_and_quantities_show_without_trailing_zeros(admin_client, strategy):
    signal = executed_signal(strategy, price=Decimal("96412.3"))
    for url in (
        reverse("admin:signals_signal_changelist"),
        reverse("admin:signals_signal_change", args=[signal.pk]),
        reverse("admin:execution_order_changelist"),
        reverse("admin:execution_fill_changelist"),
    ):
        page = admin_client.get(url).content.decode()
        assert "000000000" not in page, url
    page = admin_client.get(reverse("admin:signals_signal_changelist")).content.decode()
    assert "96412.3" in page


def test_times_carry_seconds_and_the_time_zone(admin_client, strategy):
    executed_signal(strategy)
    page = admin_client.get(reverse("admin:signals_signal_changelist")).content.decode()
    assert TIME.search(page), "no time with seconds and zone in the signal list"
    assert " a.m." not in page and " p.m." not in page


def test_fired_to_received_shows_what_timenows_rounding_allows(admin_client, strategy):
    received = timezone.now().replace(microsecond=870_000)
    signal = executed_signal(strategy, received_at=received, fired_at=received.replace(microsecond=0))
    page = admin_client.get(reverse("admin:signals_signal_change", args=[signal.pk])).content.decode()
    assert "≤ 870 ms" in page and 'id="tv-fired-note"' in page
    late = executed_signal(
        strategy, received_at=received, fired_at=received.replace(microsecond=0) - timedelta(seconds=2)
    )
    page = admin_client.get(reverse("admin:signals_signal_change", args=[late.pk])).content.decode()
    assert "+1.9–2.9 s" in page


def test_latency_chart_is_scaled_to_its_data_over_the_titled_period(admin_client, strategy):
    for ms in (80, 120, 400):
        executed_signal(strategy, sent_ms=ms)
    page = admin_client.get(reverse("admin:index")).content.decode()
    chart = page.split('id="tv-latency-chart"')[1].split("</figure>")[0]
    assert "<figcaption>Alert → order sent, last 24 h</figcaption>" in chart
    assert 'data-y-max="400"' in chart  # p95 ≈ 372 ms: the axis ends at the next round step
    assert 'data-x-span-s="86400"' in chart
    assert '<text x="4" y="14" class="tv-axis tv-unit">ms</text>' in chart


def test_a_slow_period_is_charted_in_seconds(admin_client, strategy):
    executed_signal(strategy, sent_ms=95_000, fill_ms=96_000)
    chart = admin_client.get(reverse("admin:index")).content.decode().split('id="tv-latency-chart"')[1]
    assert 'class="tv-axis tv-unit">s</text>' in chart.split("</figure>")[0]
    assert 'data-y-max="100"' in chart


def test_trader_pages_come_first_and_security_internals_are_grouped_last(admin_client, db):
    apps = admin_client.get(reverse("admin:index")).context["app_list"]
    labels = [a["app_label"] for a in apps]
    assert labels[:3] == ["strategies", "signals", "execution"]
    assert labels[-1] == "security"
    security = {m["object_name"] for m in apps[-1]["models"]}
    assert {"Group", "User", "AccessAttempt", "TOTPDevice"} <= security
    assert not security & {m["object_name"] for a in apps[:-1] for m in a["models"]}


def test_no_view_site_link_and_the_root_opens_the_console(admin_client, client, db):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "View site" not in page
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_a_new_strategy_starts_with_every_action_allowed_and_its_first_save_succeeds(admin_client, db):
    page = admin_client.get(reverse("admin:strategies_strategy_add"))
    form = page.context["adminform"].form
    assert form["allowed_actions"].value() == list(ACTIONS)
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update(strategy_id="fresh", new_passphrase="", enabled="on")
    data = {k: ("" if v is False else v) for k, v in data.items()}
    for inline in page.context["inline_admin_formsets"]:  # e.g. account subscriptions: none added
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
    response = admin_client.post(reverse("admin:strategies_strategy_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Strategy.objects.get(strategy_id="fresh").allowed_actions == list(ACTIONS)


def test_status_comes_before_the_long_columns_in_each_list():
    from execution.admin import OrderAdmin, PositionAdmin
    from signals.admin import SignalAdmin

    assert SignalAdmin.list_display.index("status_badge") == 2
    assert OrderAdmin.list_display.index("status_col") == 2
    assert PositionAdmin.list_display.index("unrealised_col") < PositionAdmin.list_display.index("account")
