"""Builders for the admin tests: a strategy with history (signals, orders, fills)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from execution.models import Fill, Order
from signals.models import Signal
from tests.factories import OrderFactory, SignalFactory, StrategyFactory
from tests.system_tools import require_tool


def executed_signal(strategy, *, sent_ms: int = 120, fill_ms: int = 300, client_order_id: str = "", **kw) -> Signal:
    """A signal with its whole latency chain, one filled order and one fill."""
    received = kw.pop("received_at", timezone.now() - timedelta(minutes=5))
    signal = SignalFactory(
        strategy=strategy,
        status=Signal.Status.EXECUTED,
        received_at=received,
        committed_at=received + timedelta(milliseconds=2),
        started_at=received + timedelta(milliseconds=10),
        sent_at=received + timedelta(milliseconds=sent_ms),
        acked_at=received + timedelta(milliseconds=sent_ms + 40),
        first_fill_at=received + timedelta(milliseconds=fill_ms),
        filled_at=received + timedelta(milliseconds=fill_ms),
        finished_at=received + timedelta(milliseconds=fill_ms + 5),
        raw_body='{"action": "buy", "passphrase": "***"}',
        content_type="application/json",
        **kw,
    )
    order = OrderFactory(
        signal=signal,
        leg=0,
        client_order_id=client_order_id or f"tv{signal.pk}x0",
        status=Order.Status.FILLED,
        filled_qty=Decimal("0.01"),
        avg_price=Decimal("65010"),
        fee=Decimal("0.35"),
        fee_currency="USDT",
        slippage_bps=Decimal("1.54"),
    )
    Fill.objects.create(
        order=order,
        trade_id=f"t{signal.pk}",
        qty=Decimal("0.01"),
        price=Decimal("65010"),
        fee=Decimal("0.35"),
        fee_currency="USDT",
        filled_at=received + timedelta(milliseconds=fill_ms),
    )
    return signal


@pytest.fixture
def strategy(db):
    return StrategyFactory(strategy_id="trend-btc", name="Trend BTC")


@pytest.fixture(autouse=True)
def _no_drift_or_failing_channels_from_other_tests():
    """The dashboard reads reconcile drift, failing notification channels and its cached
    P&L curves from Redis, which tests share: each console test starts with none."""
    from execution.selectors import RECONCILE_DRIFT_KEY
    from tvtrader.ops.notifications import DELIVERY_STATUS_KEY
    from tvtrader.redisconn import key, redis_client

    def clean():
        client = redis_client()
        client.delete(key(RECONCILE_DRIFT_KEY), key(DELIVERY_STATUS_KEY))
        for cached in client.scan_iter(match=key("pnl", "curves", "*")):
            client.delete(cached)

    clean()
    yield
    clean()


# --- the real browser (tests/admin/test_browser*.py) ---------------------------------------


def ensure_chromium() -> tuple[str, str]:
    """Debian's chromium and its chromedriver (installed by .ci/run); skipped when missing."""
    browser = require_tool("chromium", package="chromium", needed_for="the browser test of the console")
    driver = require_tool("chromedriver", package="chromium-driver", needed_for="the browser test of the console")
    return browser, driver


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, chromedriver = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1366,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def server():
    """A live server on 127.0.0.1 and a port the OS picks."""
    from pytest_django.live_server_helper import LiveServer

    live = LiveServer("127.0.0.1:0")
    yield live
    live.stop()
