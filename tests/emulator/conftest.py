"""Fixtures: a fresh emulator per test and real ccxt clients redirected to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import ccxt
import pytest

from emulator import ExchangeEmulator
from execution.exchanges.redirect import redirect_exchange

KEY, SECRET, PASSPHRASE = "test-key", "test-secret", "test-pass"
KEY2, SECRET2 = "other-key", "other-secret"


@pytest.fixture
def emu() -> Iterator[ExchangeEmulator]:
    with ExchangeEmulator(accounts={KEY: SECRET, KEY2: SECRET2}, passphrases={KEY: PASSPHRASE}) as emulator:
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


def bitget_client(url: str, *, spot: bool = False, password: str = PASSPHRASE, **config: object) -> ccxt.bitget:
    """ccxt.bitget as tvtrader's gateway configures it (classic account, one market type)."""
    options = {
        "defaultType": "spot" if spot else "swap",
        "fetchMarkets": {"types": ["spot" if spot else "swap"]},
        "uta": False,
        "maxRetriesOnFailure": 0,
    }
    options.update(config.pop("options", {}))
    ex = ccxt.bitget(
        {
            "apiKey": config.pop("apiKey", KEY),
            "secret": config.pop("secret", SECRET),
            "password": password,
            "has": {"fetchCurrencies": False},
            "enableRateLimit": False,
            "options": options,
            **config,
        }
    )
    return redirect_exchange(ex, url)


def okx_client(url: str, *, spot: bool = False, password: str = PASSPHRASE, **config: object) -> ccxt.okx:
    """ccxt.okx as tvtrader's gateway configures it (single-order endpoint, one market type)."""
    options = {
        "defaultType": "spot" if spot else "swap",
        "fetchMarkets": {"types": ["spot" if spot else "swap"]},
        "createOrder": "privatePostTradeOrder",
        "maxRetriesOnFailure": 0,
    }
    options.update(config.pop("options", {}))
    ex = ccxt.okx(
        {
            "apiKey": config.pop("apiKey", KEY),
            "secret": config.pop("secret", SECRET),
            "password": password,
            "has": {"fetchCurrencies": False},
            "enableRateLimit": False,
            "options": options,
            **config,
        }
    )
    return redirect_exchange(ex, url)


@pytest.fixture
def make_bitget(emu: ExchangeEmulator) -> Callable[..., ccxt.bitget]:
    def make(load: bool = True, **kwargs: object) -> ccxt.bitget:
        ex = bitget_client(emu.url, **kwargs)
        if load:
            ex.load_markets()
        return ex

    return make


@pytest.fixture
def make_okx(emu: ExchangeEmulator) -> Callable[..., ccxt.okx]:
    def make(load: bool = True, **kwargs: object) -> ccxt.okx:
        ex = okx_client(emu.url, **kwargs)
        if load:
            ex.load_markets()
        return ex

    return make


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
