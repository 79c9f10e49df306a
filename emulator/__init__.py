"""Local HTTP emulator of the Bybit V5, Binance USD-M, Bitget v2 (USDT-M
futures and spot) and OKX v5 (swaps and spot) REST APIs, and the private
streams of Bybit and Binance.

Real ccxt talks to it over loopback HTTP with real request signatures, so
tests and benchmarks exercise the production exchange code path. Faults
(latency, timeouts after booking, 5xx, venue error codes, partial fills,
eventual consistency, dropped connections) and per-account rate limits can be
injected per request. The same port serves each venue's private WebSocket
order stream (:mod:`.streams`: Bybit ``/v5/private``, Binance's listenKey user
data stream), pushed from the order engine at every order state change, with
stream faults (``stream_drop``, ``stream_delay_ms``, ``stream_silent``).
Standard library only.

Typical use::

    from emulator import ExchangeEmulator
    from execution.exchanges.redirect import redirect_exchange

    with ExchangeEmulator(accounts={"key": "secret"}, passphrases={"key": "pass"}) as emu:
        ex = ccxt.bybit({"apiKey": "key", "secret": "secret"})
        redirect_exchange(ex, emu.url)
        okx = ccxt.okx({"apiKey": "key", "secret": "secret", "password": "pass"})
        redirect_exchange(okx, emu.url)
        ...

Fault rules (see :mod:`.faults` for every action and parameter)::

    emu.add_fault("timeout_after_booking", "order/create", ms=2000)
    emu.add_fault("ret_code", "create_order", code=10006, count=3, symbol="BTCUSDT")
    emu.add_fault("partial_fill", "create_order", fraction=0.5, fill_after_lookups=2)

Admin HTTP API (loopback only, JSON, no auth) under ``/__emulator/``:
``GET health``; ``GET|POST|DELETE faults`` (POST a rule or a list of rules,
same fields as :class:`FaultRule`); ``DELETE faults/<id>``; ``POST reset``;
``GET|DELETE requests`` (filters: path_contains, venue, operation, account,
symbol, client_order_id, limit); ``GET orders``; ``POST price`` {symbol,
price}; ``POST balance`` {amount, coin, account, venue}; ``POST position``
{symbol, size, entry_price}; ``POST leverage``; ``POST rate_limit``
{max_per_second}; ``GET rate_limit_violations``; ``POST fill_rest``
{order_id | client_order_id}; ``POST clock`` {offset_ms}; ``POST market``;
``GET streams`` (open stream connections; filters venue, account);
``POST streams/drop`` {venue, account}; ``POST streams/expire_listen_keys``
{account}; ``POST streams/listen_key_ttl`` {seconds}.

Run ``python -m emulator --help`` for the developer server. For
benchmarks, prefer running it as that separate process: in-process, the
emulator's threads share the GIL with the code under test.
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
