"""What an operator does by hand, for Bitget and OKX: start the emulator (`make emulator`, i.e.
`python -m emulator`), add a testnet account in the admin with the emulator's URL as base URL
and the passphrase as third credential, press "Test connection", send a test signal, then let a
real alert trade through the emulator."""

import json
import subprocess
import sys
import urllib.request
from decimal import Decimal

import pytest
from django.urls import reverse

from execution.models import ExchangeAccount, Order
from execution.services import signal_execute
from signals.models import Signal
from tests.conftest import BASE_DIR, wait_for
from tests.factories import StrategyFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def emulator_process(tmp_path):
    """`python -m emulator` on a free port, as `make emulator` runs it."""
    out = open(tmp_path / "emulator.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--key", "K1", "--secret", "S1", "--passphrase", "P1"],
        cwd=BASE_DIR,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:

        def url():
            out.seek(0)
            for line in out.read().splitlines():
                if line.startswith("Exchange emulator listening on "):
                    return line.rsplit(" ", 1)[-1]
            return None

        base = wait_for(url, timeout=20, message="the emulator to listen")
        out.seek(0)
        banner = out.read()
        assert "Bitget v2" in banner and "OKX v5" in banner and "P1" not in banner  # never echoed
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        out.close()


def emu_get(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("venue", ["bitget", "okx"])
def test_a_testnet_account_added_in_the_admin_trades_against_the_emulator(
    emulator_process, admin_client, client, venue
):
    form = {
        "label": f"{venue}-emu",
        "exchange": venue,
        "mode": "testnet",
        "market_type": "linear",
        "position_mode": "one_way",
        "margin_mode": "cross",
        "base_url": emulator_process,
        "max_orders_per_second": "10",
        "paper_fee_bps": "5.5",
        "paper_slippage_bps": "2",
        "paper_quote_currency": "USDT",
        "paper_starting_balance": "10000",
        "api_key": "K1",
        "api_secret": "S1",
        "api_password": "",
    }
    response = admin_client.post(reverse("admin:execution_exchangeaccount_add"), form)
    assert response.status_code == 200  # refused: Bitget and OKX keys come with a passphrase
    assert "API passphrase" in str(response.context["adminform"].form.errors)
    response = admin_client.post(reverse("admin:execution_exchangeaccount_add"), {**form, "api_password": "P1"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    account = ExchangeAccount.objects.get(label=f"{venue}-emu")

    tested = admin_client.post(
        reverse("admin:execution_exchangeaccount_test_connection", args=[account.pk]), follow=True
    )
    shown = [str(m) for m in tested.context["messages"]]
    assert shown[-1] == f"{venue}-emu: connection OK. connected; equity 100000", shown

    strategy = StrategyFactory(strategy_id="demo", account=account)
    admin_client.post(reverse("admin:strategies_strategy_send_test", args=[strategy.pk]))
    test_signal = Signal.objects.get(strategy=strategy, is_test=True)
    signal_execute(signal_id=test_signal.pk)
    test_signal.refresh_from_db()
    assert test_signal.status == Signal.Status.EXECUTED, test_signal.reason  # on paper, by design

    from tests.conftest import alert_body

    body = alert_body(action="buy", volume=0.01, price=65000, exchange=venue.upper())
    answer = client.post("/tv-webhook", data=json.dumps(body), content_type="text/plain")
    assert answer.status_code == 202, answer.content
    signal_execute(signal_id=answer.json()["signal_id"])
    signal = Signal.objects.get(pk=answer.json()["signal_id"])
    assert signal.status == Signal.Status.EXECUTED, signal.reason
    order = Order.objects.get(signal=signal)
    assert order.filled_qty == Decimal("0.01")
    [booked] = [
        o
        for o in emu_get(emulator_process, f"/__emulator/orders?venue={venue}")
        if not o["client_order_id"].startswith("x")
    ]
    assert booked["client_order_id"] == order.client_order_id and booked["status"] == "Filled"
