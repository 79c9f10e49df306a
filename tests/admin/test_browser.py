"""The console in a real browser: headless Chromium (Debian's chromium + chromium-driver, which
.ci/run installs; skipped when missing, see tests/system_tools.py) logs in, reads the
dashboard, engages and releases a kill switch through its confirmation page, opens a signal's
timeline and copies an alert template. Screenshots are kept under artifacts/screenshots/ (desktop and phone sizes)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from strategies.models import Strategy
from tests.admin.conftest import executed_signal
from tests.factories import StrategyFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
PASSWORD = "browser-test-password-1"


def shot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # Full page height so the whole page is in the artefact.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(height + 120, 600), 4000))
    driver.save_screenshot(str(path))
    return path


def test_operator_console_end_to_end_in_chromium(browser, server, django_user_model):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    django_user_model.objects.create_superuser("trader", "", PASSWORD)
    strategy = StrategyFactory(strategy_id="trend-btc", name="Trend BTC", expected_interval_minutes=240)
    StrategyFactory(strategy_id="mean-rev-eth", name="Mean reversion ETH", expected_interval_minutes=5)
    now = timezone.now()
    signals = [
        executed_signal(strategy, sent_ms=ms, fill_ms=ms + 250, received_at=now - timedelta(hours=hours, minutes=5))
        for hours, ms in ((6, 80), (4, 120), (2, 160), (0, 400))
    ]
    wait = WebDriverWait(browser, 15)

    # Log in.
    browser.get(f"{server.url}/admin/login/?next=/admin/")
    browser.find_element(By.ID, "id_username").send_keys("trader")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    # The dashboard: strategies, attention block (the ETH strategy is silent), charts.
    wait.until(ec.presence_of_element_located((By.ID, "tv-strategies")))
    page = browser.page_source
    assert "trend-btc" in page and "mean-rev-eth is silent" in page
    assert browser.find_elements(By.CSS_SELECTOR, "svg.tv-chart polyline")
    shot(browser, "01-dashboard")

    # Engage the strategy's kill switch: a confirmation page first.
    row = browser.find_element(By.CSS_SELECTOR, "tr[data-strategy='trend-btc']")
    row.find_element(By.LINK_TEXT, "Halt…").click()
    wait.until(ec.presence_of_element_located((By.ID, "tv-killswitch-form")))
    assert "Stop trading for strategy trend-btc?" in browser.page_source
    assert not Strategy.objects.get(pk=strategy.pk).halted
    browser.find_element(By.ID, "id_reason").send_keys("browser test")
    shot(browser, "02-killswitch-confirm")
    browser.find_element(By.ID, "tv-confirm").click()
    wait.until(ec.presence_of_element_located((By.ID, "tv-strategies")))
    assert Strategy.objects.get(pk=strategy.pk).halted
    assert "Kill switch engaged" in browser.page_source
    shot(browser, "03-dashboard-halted")

    # Release it: again a deliberate confirmation.
    browser.find_element(By.CSS_SELECTOR, "tr[data-strategy='trend-btc']").find_element(By.LINK_TEXT, "Resume…").click()
    wait.until(ec.presence_of_element_located((By.ID, "tv-killswitch-form")))
    assert "Resume trading for strategy trend-btc?" in browser.page_source
    browser.find_element(By.ID, "tv-confirm").click()
    wait.until(ec.presence_of_element_located((By.ID, "tv-strategies")))
    assert not Strategy.objects.get(pk=strategy.pk).halted

    # A signal's timeline.
    browser.get(f"{server.url}/admin/signals/signal/{signals[-1].pk}/change/")
    timeline = wait.until(ec.presence_of_element_located((By.ID, "tv-timeline")))
    assert "Order sent" in timeline.text and "Filled" in timeline.text
    assert "+390 ms" in timeline.text  # started at +10 ms, sent at +400 ms
    shot(browser, "04-signal-timeline")

    # Copy the alert template from the strategy page.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.get(f"{server.url}/admin/strategies/strategy/{strategy.pk}/change/")
    template = wait.until(ec.presence_of_element_located((By.ID, "tv-alert-strategy"))).text
    button = browser.find_element(By.CSS_SELECTOR, "button[data-copy-target='tv-alert-strategy']")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    wait.until(lambda d: button.get_attribute("data-copied") == "yes")
    clipboard = browser.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, e => done('ERROR ' + e));"
    )
    assert clipboard.strip() == template.strip()
    assert '"strategy_id": "trend-btc"' in clipboard
    shot(browser, "05-strategy-alert-template")

    # Phone-size viewport: the dashboard stacks into cards and nothing scrolls sideways.
    browser.set_window_size(390, 844)
    browser.get(f"{server.url}/admin/")
    wait.until(ec.presence_of_element_located((By.ID, "tv-strategies")))
    shot(browser, "06-dashboard-phone")
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the dashboard scrolls sideways on a phone by {overflow}px"
    browser.get(f"{server.url}/admin/signals/signal/{signals[-1].pk}/change/")
    wait.until(ec.presence_of_element_located((By.ID, "tv-timeline")))
    shot(browser, "07-signal-phone")
