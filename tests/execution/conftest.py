"""Execution fixtures: the local exchange emulator, a testnet account pointed at it (real
ccxt over HTTP, real signatures), and a real worker tuned for fast fault tests."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from emulator import ExchangeEmulator
from execution.models import ExchangeAccount
from signals.models import Signal
from tests.conftest import alert_body, wait_for
from tests.factories import StrategyFactory

KEY, SECRET, PASSPHRASE = "emu-key", "emu-secret", "emu-pass"

# Short timeouts so fault tests take seconds, not minutes. Production defaults are in
# settings (10 s exchange timeout, 5 s not-found grace, 60 s lease).
FAST_WORKER_ENV = {
    "EXCHANGE_TIMEOUT_SECONDS": "1.5",
    "ORDER_NOT_FOUND_GRACE_SECONDS": "1",
    "SIGNAL_LEASE_SECONDS": "6",
}


@pytest.fixture
def emu():
    with ExchangeEmulator(accounts={KEY: SECRET}, passphrases={KEY: PASSPHRASE}) as emulator:
        yield emulator


def make_account(emu, *, exchange="bybit", market_type="linear", label=None, **fields) -> ExchangeAccount:
    account = ExchangeAccount(
        label=label or f"emu-{exchange}-{market_type}",
        exchange=exchange,
        mode=ExchangeAccount.Mode.TESTNET,
        market_type=market_type,
        base_url=emu.url,
        **fields,
    )
    account.set_credentials(
        api_key=KEY, api_secret=SECRET, api_password=PASSPHRASE if exchange in ("bitget", "okx") else None
    )
    account.full_clean()
    account.save()
    return account


@pytest.fixture
def emu_strategy(emu, db):
    account = make_account(emu)
    return StrategyFactory(strategy_id="demo", account=account)


@pytest.fixture
def fast_worker(worker_factory):
    return worker_factory(env=FAST_WORKER_ENV)


@pytest.fixture
def send(client):
    """POST an alert and return its signal id (asserting it was accepted)."""
    counter = iter(range(10_000))

    def _send(**overrides) -> int:
        body = alert_body(bar_time=f"2026-11-24T{next(counter) % 24:02d}:00:00Z", **overrides)
        response = client.post("/tv-webhook", data=json.dumps(body), content_type="text/plain")
        assert response.status_code == 202, response.content
        return response.json()["signal_id"]

    return _send


def finished(signal_id: int, timeout: float = 20.0) -> Signal:
    def _done():
        signal = Signal.objects.get(pk=signal_id)
        return signal if signal.is_terminal else None

    return wait_for(_done, timeout=timeout, message=f"signal {signal_id} to finish")


__all__ = ["KEY", "SECRET", "PASSPHRASE", "FAST_WORKER_ENV", "make_account", "finished", "settings"]
