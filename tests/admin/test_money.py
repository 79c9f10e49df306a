"""The money view: each trade's realised P&L and fee on its signal's page (replayed with the
ledger's own rule, so the totals match the positions), P&L curves per strategy and account,
unrealised P&L at the last known price, and CSV exports that keep the list's filters."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from execution import pnl
from execution.engine.ledger import order_apply_state
from execution.exchanges.base import OrderState
from execution.models import Fill, Order, Position
from signals.models import Signal
from tests.factories import OrderFactory, SignalFactory, StrategyFactory

pytestmark = pytest.mark.django_db

D = Decimal


def trade(strategy, side: str, qty: str, price: str, fee: str = "0", *, ticker_price: str | None = None) -> Signal:
    """A signal whose one order the real ledger books as filled."""
    signal = SignalFactory(strategy=strategy, status=Signal.Status.EXECUTED, price=D(ticker_price or price))
    order = OrderFactory(signal=signal, side=side, requested_qty=D(qty), status=Order.Status.OPEN)
    order_apply_state(
        order=order,
        state=OrderState(
            client_order_id=order.client_order_id,
            exchange_order_id=f"x{order.pk}",
            status="filled",
            filled=D(qty),
            average=D(price),
            fee=D(fee),
            fee_currency="USDT",
        ),
    )
    return signal


@pytest.fixture
def history(strategy):
    return [
        trade(strategy, "buy", "0.02", "65000", "0.65"),
        trade(strategy, "sell", "0.01", "66000", "0.33"),  # closes half: +10
        trade(strategy, "sell", "0.03", "64000", "0.96"),  # closes 0.01 (-10), flips short 0.02 @ 64000
        trade(strategy, "buy", "0.02", "63000", "0.63"),  # closes the short: +20
    ]


def test_replayed_trade_pnl_adds_up_to_what_the_ledger_booked(strategy, history):
    trades = pnl.replay(pnl.all_fills_for_replay())
    assert [t.realized for t in trades] == [D("0"), D("10"), D("-10"), D("20")]
    position = Position.objects.get(strategy=strategy, symbol="BTC/USDT:USDT")
    assert sum(t.realized for t in trades) == position.realized_pnl == D("20")
    assert sum(t.fee for t in trades) == position.fees_paid == D("2.57")
    account_row = Position.objects.get(strategy=None, account=strategy.account, symbol="BTC/USDT:USDT")
    by_account = pnl.replay(pnl.all_fills_for_replay(), by_strategy=False)
    assert sum(t.realized for t in by_account) == account_row.realized_pnl


def test_signal_page_shows_each_fills_realised_pnl_and_fee(admin_client, history):
    page = admin_client.get(reverse("admin:signals_signal_change", args=[history[2].pk])).content.decode()
    assert 'id="tv-signal-realised">-10.00<' in page
    assert 'id="tv-signal-fees">0.96<' in page
    assert 'id="tv-signal-net">-10.96<' in page
    assert "64000" in page and "64000.000000000000" not in page


def test_pnl_curves_per_strategy_and_per_account(strategy, history):
    other = StrategyFactory(strategy_id="other", account=strategy.account)
    trade(other, "buy", "1", "10", "0")
    curves = pnl.pnl_curves(by="strategy")
    assert [v for _, v in curves[strategy.pk]] == [D("-0.65"), D("9.02"), D("-1.94"), D("17.43")]
    assert [v for _, v in curves[other.pk]] == [D("0")]
    assert pnl.pnl_curves(by="account")[strategy.account_id][-1][1] == D("17.43")


def test_dashboard_draws_the_pnl_and_paper_equity_curves(admin_client, strategy, history):
    strategy.account.paper_starting_balance = D("100000")
    strategy.account.save()
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert 'id="tv-pnl-strategy"' in page and 'id="tv-pnl-account"' in page
    assert "trend-btc" in page.split('id="tv-pnl-strategy"')[1].split("</figure>")[0]
    equity = page.split('id="tv-equity-paper"')[1].split("</figure>")[0]
    assert strategy.account.label in equity and "<polyline" in equity
    assert 'data-y-max="100020"' in equity and 'data-y-min="99995"' in equity  # around its own level


def test_positions_list_shows_unrealised_pnl_at_the_last_known_price(admin_client, strategy, history):
    trade(strategy, "buy", "0.01", "62000")  # long 0.01 @ 62000
    SignalFactory(strategy=strategy, price=D("62500"), status=Signal.Status.SKIPPED)  # a newer price
    page = admin_client.get(reverse("admin:execution_position_changelist")).content.decode()
    assert "+5.00" in page  # (62500 - 62000) * 0.01
    assert "62500" in page and "62500.000000000000" not in page


def read_csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_signal_export_keeps_the_lists_filter_and_all_its_pages(admin_client, strategy, history):
    other = StrategyFactory(strategy_id="other")
    for _ in range(60):  # more than one page of the list
        SignalFactory(strategy=strategy, status=Signal.Status.REJECTED, reason="=HYPERLINK(1)")
    SignalFactory(strategy=other, status=Signal.Status.REJECTED)
    url = reverse("admin:signals_signal_export_csv")
    rows = read_csv(admin_client.get(url, {"strategy__id__exact": strategy.pk, "status__exact": "rejected"}))
    assert len(rows) == 60
    assert {r["strategy"] for r in rows} == {"trend-btc"}
    assert rows[0]["reason"] == "'=HYPERLINK(1)"  # a spreadsheet must not run it
    listing = admin_client.get(reverse("admin:signals_signal_changelist"), {"status__exact": "rejected"})
    assert 'href="/admin/signals/signal/export.csv?status__exact=rejected"' in listing.content.decode()


def test_order_fill_and_position_exports(admin_client, strategy, history):
    orders = read_csv(admin_client.get(reverse("admin:execution_order_export_csv"), {"side__exact": "sell"}))
    assert [(r["side"], r["filled_qty"], r["avg_price"]) for r in orders] == [
        ("sell", "0.03", "64000"),
        ("sell", "0.01", "66000"),
    ]
    fills = read_csv(admin_client.get(reverse("admin:execution_fill_export_csv")))
    assert sorted(r["realised_pnl"] for r in fills) == ["-10", "0", "10", "20"]
    assert {r["fee_currency"] for r in fills} == {"USDT"}
    positions = read_csv(
        admin_client.get(reverse("admin:execution_position_export_csv"), {"strategy__id__exact": strategy.pk})
    )
    assert len(positions) == 1 and positions[0]["realised_pnl"] == "20" and positions[0]["qty"] == "0"


def test_export_with_a_bad_filter_says_so_instead_of_failing(admin_client, db):
    response = admin_client.get(reverse("admin:execution_order_export_csv"), {"bogus__field": "1"})
    assert response.status_code == 302
    assert Fill.objects.count() == 0


def test_export_needs_a_console_login(client, db):
    response = client.get(reverse("admin:signals_signal_export_csv"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_past_the_replay_limit_pnl_is_not_guessed(admin_client, strategy, history, monkeypatch):
    monkeypatch.setattr(pnl, "REPLAY_LIMIT", 3)
    monkeypatch.setattr(pnl, "SIGNAL_REPLAY_LIMIT", 3)
    page = admin_client.get(reverse("admin:signals_signal_change", args=[history[3].pk])).content.decode()
    assert "P&amp;L not computed" in page and 'id="tv-signal-realised"' not in page
    dashboard = admin_client.get(reverse("admin:index")).content.decode()
    assert "Not drawn: more than 3 fills" in dashboard


def test_the_dashboards_curves_are_replayed_once_per_new_fill(
    admin_client, strategy, history, django_assert_max_num_queries
):
    admin_client.get(reverse("admin:index"))
    cached = pnl.pnl_curves_cached()
    assert [round(v, 2) for _, v in cached["strategy"][strategy.pk]] == [-0.65, 9.02, -1.94, 17.43]
    assert round(cached["account"][strategy.account_id][-1][1], 2) == 17.43
    with django_assert_max_num_queries(1):  # the latest fill's id, then Redis
        pnl.pnl_curves_cached()
    trade(strategy, "sell", "0.01", "63500")
    assert len(pnl.pnl_curves_cached()["strategy"][strategy.pk]) == 5


def test_strategy_page_draws_its_own_pnl_curve(admin_client, strategy, history):
    page = admin_client.get(reverse("admin:strategies_strategy_change", args=[strategy.pk])).content.decode()
    section = page.split('id="tv-pnl"')[1].split("</fieldset>")[0]
    assert "<polyline" in section and 'data-y-max="20"' in section
