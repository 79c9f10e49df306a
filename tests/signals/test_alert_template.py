"""One alert message, generated in one place (`signals.alert_message`): the README, the docs,
the strategy page and `manage.py alert_template` show that text, and each copy, filled in as
TradingView fills it, is accepted by the webhook. (The installer's copy: tests/deploy.)"""

from __future__ import annotations

import html
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from signals.alert_message import PASSPHRASE_PLACEHOLDER, alert_message
from signals.models import Signal
from tests.factories import StrategyFactory

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)
BLOCK = re.compile(r"<!-- alert-template:begin[^>]*-->\n```json\n(.*?)\n```\n<!-- alert-template:end -->", re.S)

# What TradingView puts in place of each placeholder when a Pine strategy's order fills.
TRADINGVIEW_VALUES = {
    "{{strategy.order.action}}": "buy",
    "{{ticker}}": "BTCUSDT.P",
    "{{exchange}}": "BYBIT",
    "{{close}}": "96412.3",
    "{{strategy.order.contracts}}": "0.01",
    "{{interval}}": "15",
    "{{strategy.order.id}}": "Long",
    "{{strategy.order.comment}}": "",
    "{{strategy.market_position}}": "long",
    "{{strategy.market_position_size}}": "0.01",
    "{{strategy.prev_market_position}}": "flat",
}


def as_tradingview_sends(text: str, passphrase: str, *, bars_back: int = 0) -> str:
    # The bar's open and the firing moment, as TradingView fills them: now (whole seconds) and
    # the start of the current 15-minute bar, so the default stale cut-off lets it in.
    now = timezone.now().replace(microsecond=0)
    bar = now.replace(minute=now.minute - now.minute % 15, second=0) - timedelta(minutes=15 * bars_back)
    values = {
        **TRADINGVIEW_VALUES,
        "{{time}}": bar.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "{{timenow}}": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    assert "{{" not in text, text
    return text.replace(PASSPHRASE_PLACEHOLDER, passphrase)


def send(client, text: str, passphrase: str = "", *, bars_back: int = 0) -> Signal:
    body = as_tradingview_sends(text, passphrase or settings.WEBHOOK_PASSPHRASE, bars_back=bars_back)
    response = client.post("/tv-webhook", body, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "accepted"
    return Signal.objects.get(pk=response.json()["signal_id"])


def readme_copy(path: Path) -> str:
    found = BLOCK.findall(path.read_text())
    assert len(found) == 1, f"{path} must hold exactly one generated alert template block"
    return found[0]


@pytest.mark.parametrize("doc", ["README.md", "docs/webhook.md"])
def test_the_documented_template_is_the_generated_one(doc):
    assert readme_copy(BASE_DIR / doc) == alert_message(), (
        f"{doc} is out of date: paste the output of `python manage.py alert_template --offline` between its "
        "alert-template markers"
    )


@pytest.mark.parametrize("doc", ["README.md", "docs/webhook.md"])
def test_the_documented_template_goes_through_the_webhook(client, doc):
    StrategyFactory(strategy_id="demo")
    signal = send(client, readme_copy(BASE_DIR / doc))
    assert (signal.action, signal.ticker, str(signal.price.normalize())) == ("buy", "BTCUSDT.P", "96412.3")
    assert signal.fired_at is not None and signal.tv_order_id == "Long"


def test_the_strategy_pages_templates_go_through_the_webhook(admin_client, client):
    strategy = StrategyFactory(strategy_id="trend-btc")
    page = admin_client.get(reverse("admin:strategies_strategy_change", args=[strategy.pk])).content.decode()
    for element_id in ("tv-alert-strategy", "tv-alert-indicator"):
        shown = re.search(rf'<pre class="tv-code" id="{element_id}">(.*?)</pre>', page, re.S)
        assert shown, element_id
        text = html.unescape(shown.group(1))
        kind = "strategy" if element_id == "tv-alert-strategy" else "indicator"
        assert text == alert_message(strategy_id="trend-btc", kind=kind)
        signal = send(client, text, bars_back=0 if kind == "strategy" else 1)  # two alerts, not one resent
        assert signal.strategy == strategy and signal.action == "buy"


def test_a_strategy_with_its_own_passphrase_shows_that_placeholder(admin_client, client):
    strategy = StrategyFactory(strategy_id="own")
    strategy.set_passphrase("its-own-passphrase-123")
    strategy.save()
    page = admin_client.get(reverse("admin:strategies_strategy_change", args=[strategy.pk]))
    text = page.context["alert_templates"][0]["text"]
    assert "YOUR_STRATEGY_PASSPHRASE" in text
    send(client, text.replace("YOUR_STRATEGY_PASSPHRASE", "its-own-passphrase-123"))


def test_the_command_prints_the_template_and_it_goes_through_the_webhook(client):
    StrategyFactory(strategy_id="demo")
    out = io.StringIO()
    call_command("alert_template", "--offline", stdout=out)
    assert out.getvalue().strip() == alert_message()
    send(client, out.getvalue())

    out = io.StringIO()
    call_command("alert_template", "--strategy", "demo", "--kind", "indicator", "--passphrase", "p-1", stdout=out)
    assert json.loads(out.getvalue())["passphrase"] == "p-1"


def test_the_command_names_an_unknown_strategy():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no strategy with strategy_id 'nope'"):
        call_command("alert_template", "--strategy", "nope")
