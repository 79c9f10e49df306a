"""Local HTTP emulator of the Bybit V5 and Binance USD-M REST APIs.

Real ccxt talks to it over loopback HTTP with real request signatures, so
tests and benchmarks exercise the production exchange code path. Faults
(latency, timeouts after booking, 5xx, venue error codes, partial fills,
eventual consistency, dropped connections) and per-account rate limits can be
injected per request. Standard library only.

Typical use::

    from execution.emulator import ExchangeEmulator
    from execution.exchanges.redirect import redirect_exchange

    with ExchangeEmulator(accounts={"key": "secret"}) as emu:
        ex = ccxt.bybit({"apiKey": "key", "secret": "secret"})
        redirect_exchange(ex, emu.url)
        ...

Run ``python -m execution.emulator --help`` for the developer server.
"""

from .engine import Order, Position
from .faults import ACTIONS, FaultRule
from .markets import Market, default_markets
from .server import ExchangeEmulator, RequestRecord

__all__ = [
    "ACTIONS",
    "ExchangeEmulator",
    "FaultRule",
    "Market",
    "Order",
    "Position",
    "RequestRecord",
    "default_markets",
]
