"""Fixtures: a fresh emulator per test and real ccxt clients redirected to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ccxt
import pytest

from emulator import ExchangeEmulator
from execution.exchanges.redirect import redirect_exchange

KEY, SECRET = "test-key", "test-secret"
KEY2, SECRET2 = "other-key", "other-secret"


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(accounts={KEY: SECRET, KEY2: SECRET2}) as emulator:
        yield emulator


def bybit_client(url: str, key: str = KEY, secret: str = SECRET, **config: object) -> ccxt.bybit:
    """A ccxt.bybit configured as the reference recommends, redirected to url."""
    options = {
        "fetchMarkets": {"types": ["linear", "spot"]},
        "enableUnifiedAccount": True,
        "enableUnifiedMargin": False,
        "maxRetriesOnFailure": 0,
    }
    options.update(config.pop("options", {}))
    ex = ccxt.bybit(
        {
            "apiKey": key,
            "secret": secret,
            "has": {"fetchCurrencies": False},
            "enableRateLimit": False,
            "options": options,
            **config,
        }
    )
    return redirect_exchange(ex, url)


def binance_client(url: str, key: str = KEY, secret: str = SECRET, **config: object) -> ccxt.binanceusdm:
    options = {"maxRetriesOnFailure": 0}
    options.update(config.pop("options", {}))
    ex = ccxt.binanceusdm(
        {
            "apiKey": key,
            "secret": secret,
            "has": {"fetchCurrencies": False},
            "enableRateLimit": False,
            "options": options,
            **config,
        }
    )
    return redirect_exchange(ex, url)


@pytest.fixture
def make_bybit(emu: ExchangeEmulator) -> Callable[..., ccxt.bybit]:
    def make(load: bool = True, **kwargs: object) -> ccxt.bybit:
        ex = bybit_client(emu.url, **kwargs)
        if load:
            ex.load_markets()
        return ex

    return make


@pytest.fixture
def make_binance(emu: ExchangeEmulator) -> Callable[..., ccxt.binanceusdm]:
    def make(load: bool = True, **kwargs: object) -> ccxt.binanceusdm:
        ex = binance_client(emu.url, **kwargs)
        if load:
            ex.load_markets()
        return ex

    return make


@pytest.fixture
def bybit(make_bybit) -> ccxt.bybit:
    return make_bybit()


@pytest.fixture
def binance(make_binance) -> ccxt.binanceusdm:
    return make_binance()
