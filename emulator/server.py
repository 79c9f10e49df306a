"""The exchange emulator: an HTTP server speaking Bybit V5, Binance USD-M,
Bitget v2 and OKX v5.

Real, unpatched ccxt talks to it over HTTP (see
:func:`execution.exchanges.redirect.redirect_exchange`), so the production
code path - URL building, signing, error mapping - is what gets exercised.
One server serves every venue, routed by path prefix (``/v5/`` is Bybit,
``/fapi/`` and ``/sapi/`` are Binance, ``/api/v2/`` and ``/api/v3/`` are
Bitget, ``/api/v5/`` is OKX).

Design notes:

* ``ThreadingHTTPServer`` with one thread per connection: a request held by a
  latency or timeout fault sleeps in its own thread and never delays others.
  The listen backlog is raised so hundreds of clients can connect at once.
* Nagle is disabled and each response (headers + body) goes out in a single
  ``send``: with http.server's default of separate writes, the client's
  delayed ACK adds ~44 ms to every keep-alive request.
* Every request is recorded, with ``time.time()`` / ``time.monotonic()``
  taken the moment its request line was read, before any fault or parsing.
* The ``/__emulator/...`` admin API (faults, state, request log) has no
  authentication, which is why the server only binds to loopback.
* A WebSocket upgrade request is a private stream (:mod:`.streams`): its
  handler thread then serves that connection until it closes. It is recorded
  as operation ``stream_connect``, and HTTP faults apply to its handshake.
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from typing import Self
from urllib.parse import parse_qsl, urlsplit

from .binance import BinanceVenue
from .bitget import BitgetVenue
from .bybit import BybitVenue
from .engine import Account, Engine, Order, Position, Reject, normalize_symbol
from .faults import FaultBook, FaultRule, RequestFacts
from .markets import Market, dec
from .okx import OkxVenue
from .streams import StreamHub
from .wire import BookingEffects, WireRequest, WireResponse, json_response
from .ws import is_upgrade

__all__ = ["VENUES", "ExchangeEmulator", "RequestRecord"]

log = logging.getLogger(__name__)

VENUES = ("bybit", "binance", "bitget", "okx")
Venue = BybitVenue | BinanceVenue | BitgetVenue | OkxVenue

_DECIMAL_FIELDS = frozenset(
    {
        "tick",
        "qty_step",
        "min_qty",
        "max_qty",
        "min_notional",
        "binance_min_notional",
        "spot_tick",
        "spot_base_precision",
        "spot_min_qty",
        "spot_max_qty",
        "spot_min_amt",
        "spot_max_amt",
        "okx_ct_val",
        "okx_lot_sz",
        "okx_min_sz",
    }
)
_SIGNATURE_RE = re.compile(r"(^|&)signature=[^&]*")
_PRE_ACTIONS = ("http_5xx_before_booking", "ret_code", "http_status")
_HTML_5XX = (
    "<html><head><title>{status} Service Temporarily Unavailable</title></head>"
    "<body><center><h1>{status} Service Temporarily Unavailable</h1></center>"
    "<hr><center>nginx</center></body></html>"
)


@dataclass
class RequestRecord:
    """One request as the emulator saw it (no secrets, no signatures)."""

    seq: int
    recv_mono: float
    recv_wall: float
    method: str
    path: str
    query: str
    venue: str | None
    operation: str = "other"
    account: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None
    # The host the client aimed at: X-Forwarded-Host set by the transport
    # redirect (e.g. "api.bybit.com"), else the Host header.
    host: str | None = None
    params: dict = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    status: int | None = None
    code: int | None = None
    outcome: str = "pending"
    order_id: str | None = None
    booked: bool = False
    done_mono: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.done_mono is None:
            return None
        return (self.done_mono - self.recv_mono) * 1000.0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["duration_ms"] = self.duration_ms
        return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Without this, small responses wait for the client's delayed ACK.
    disable_nagle_algorithm = True
    server_version = "tvtrader-exchange-emulator"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def handle_one_request(self) -> None:
        # Same as BaseHTTPRequestHandler.handle_one_request, plus the receive
        # timestamps taken right after the request line arrives.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            self.recv_wall = time.time()
            self.recv_mono = time.monotonic()
            if len(self.raw_requestline) > 65536:
                self.requestline = ""
                self.request_version = ""
                self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.server.emulator._serve(self)
            self.wfile.flush()
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True
        except Exception:
            # An emulator bug must not kill the connection thread silently.
            log.exception("emulator error on %r", self.raw_requestline[:200])
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s - %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs when 200 clients connect at once.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], emulator: ExchangeEmulator) -> None:
        self.emulator = emulator
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class ExchangeEmulator:
    """A local Bybit V5, Binance USD-M, Bitget v2 and OKX v5 REST emulator with
    fault injection.

    >>> with ExchangeEmulator(accounts={"key": "secret"}) as emu:
    ...     ex = ccxt.bybit({"apiKey": "key", "secret": "secret"})
    ...     redirect_exchange(ex, emu.url)
    ...     emu.add_fault("timeout_after_booking", "order/create", ms=2000)

    ``accounts`` maps API key to secret; every key is valid on every venue,
    with separate books per venue. ``passphrases`` maps API key to the API
    passphrase Bitget and OKX require as a third credential (a key without
    one is refused there). ``initial_balances`` (default 100000 USDT) is what
    each account starts with.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: dict[str, str] | None = None,
        *,
        passphrases: dict[str, str] | None = None,
        markets: list[Market] | None = None,
        initial_balances: dict[str, object] | None = None,
        realtime_by_id_any_status: bool = True,
        check_recv_window: bool = True,
        max_records: int = 200_000,
    ) -> None:
        if not _is_loopback(host):
            # The admin API is unauthenticated: never expose it.
            raise ValueError(f"the emulator only binds to loopback, not {host!r}")
        self.host = host
        self._requested_port = port
        self._accounts: dict[str, str] = dict(accounts or {})
        self._passphrases: dict[str, str] = dict(passphrases or {})
        self.engine = Engine(
            markets=markets,
            initial_balances=initial_balances,
            realtime_by_id_any_status=realtime_by_id_any_status,
        )
        self.bybit = BybitVenue(self.engine, self._secret_for, check_recv_window=check_recv_window)
        self.binance = BinanceVenue(self.engine, self._secret_for, check_recv_window=check_recv_window)
        self.bitget = BitgetVenue(self.engine, self._credentials_for, check_recv_window=check_recv_window)
        self.okx = OkxVenue(self.engine, self._credentials_for, check_recv_window=check_recv_window)
        self._faults = FaultBook()
        # Private WebSocket streams, pushed from the engine's order events.
        self.streams = StreamHub(
            self.engine, self._faults, self._secret_for, {"bybit": self.bybit, "binance": self.binance}
        )
        self.binance.listen_keys = self.streams.binance.keys
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._records_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------- lifecycle
    def start(self) -> ExchangeEmulator:
        """Bind, serve in a background thread, return once listening."""
        if self._httpd is not None:
            return self
        self._stop.clear()
        self._httpd = _HTTPServer((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"exchange-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release held requests and close open connections."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        self.streams.stop()
        httpd.close_all_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    # ---------------------------------------------------------- accounts
    def add_account(self, api_key: str, secret: str, passphrase: str | None = None) -> None:
        self._accounts[api_key] = secret
        if passphrase is not None:
            self._passphrases[api_key] = passphrase

    def _secret_for(self, api_key: str) -> str | None:
        return self._accounts.get(api_key)

    def _credentials_for(self, api_key: str) -> tuple[str, str | None] | None:
        secret = self._accounts.get(api_key)
        return None if secret is None else (secret, self._passphrases.get(api_key))

    def _targets(self, account: str | None, venue: str | None) -> list[Account]:
        keys = [account] if account else list(self._accounts)
        venues = [venue] if venue else list(VENUES)
        for v in venues:
            if v not in VENUES:
                raise ValueError(f"unknown venue {v!r}")
        return [self.engine.account(v, k) for v in venues for k in keys]

    # ------------------------------------------------------------ faults
    def add_fault(
        self,
        action: str,
        endpoint: str | None = None,
        *,
        count: int | None = 1,
        **kwargs: object,
    ) -> FaultRule:
        """Add a fault rule; see :mod:`.faults` for actions and parameters.

        ``endpoint`` matches an operation name (``create_order``,
        ``cancel_order``, ``query_order``, ``positions``, ``balance``...) or
        any substring of the path (``"order/create"``, ``"/fapi/v1/order"``).
        ``count=None`` applies the rule to every matching request.
        """
        rule = FaultRule(action=action, endpoint=endpoint, count=count, **kwargs)
        return self._faults.add(rule)

    def add_fault_rule(self, rule: FaultRule | dict) -> FaultRule:
        if isinstance(rule, dict):
            rule = FaultRule.from_dict(rule)
        return self._faults.add(rule)

    def remove_fault(self, rule_id: int) -> bool:
        return self._faults.remove(rule_id)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[FaultRule]:
        """Rules still active (exhausted ones are removed)."""
        return self._faults.rules()

    # ------------------------------------------------------- observation
    def requests(
        self,
        path_contains: str | None = None,
        *,
        venue: str | None = None,
        operation: str | None = None,
        account: str | None = None,
        symbol: str | None = None,
        client_order_id: str | None = None,
    ) -> list[RequestRecord]:
        """Recorded venue requests (admin calls excluded), oldest first."""
        with self._records_lock:
            records = list(self._records)
        if symbol:
            symbol = normalize_symbol(symbol)
        return [
            r
            for r in records
            if (path_contains is None or path_contains in r.path)
            and (venue is None or r.venue == venue)
            and (operation is None or r.operation == operation)
            and (account is None or r.account == account)
            and (symbol is None or r.symbol == symbol)
            and (client_order_id is None or r.client_order_id == client_order_id)
        ]

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def orders(
        self,
        *,
        venue: str | None = None,
        account: str | None = None,
        symbol: str | None = None,
        client_order_id: str | None = None,
    ) -> list[Order]:
        """The ledger: snapshots of every booked order, in booking order."""
        if symbol:
            symbol = normalize_symbol(symbol)
        with self.engine.lock:
            return [
                copy.deepcopy(o)
                for o in self.engine.ledger
                if (venue is None or o.venue == venue)
                and (account is None or o.account == account)
                and (symbol is None or o.symbol == symbol)
                and (client_order_id is None or o.client_order_id == client_order_id)
            ]

    def rate_limit_violations(self, *, account: str | None = None, venue: str | None = None) -> list[dict]:
        with self.engine.lock:
            out = []
            for acct in self.engine.accounts.values():
                if (account is None or acct.key == account) and (venue is None or acct.venue == venue):
                    out.extend(acct.rate_limit_violations)
            return sorted(out, key=lambda v: v["wall"])

    # -------------------------------------------------- state manipulation
    def set_price(self, symbol: str, price: object) -> list[Order]:
        """Set the price; returns resting limit orders that filled because of it."""
        filled = self.engine.set_price(symbol, price)
        return [copy.deepcopy(o) for o in filled]

    def price(self, symbol: str) -> Decimal:
        with self.engine.lock:
            return self.engine.price(symbol)

    def add_market(self, market: Market | str, price: object = None, **kwargs: object) -> Market:
        """Add (or replace) a market, as a :class:`Market` or by fields.

        ``add_market("PEPE", "0.00001", tick="0.0000001", qty_step="100")``;
        unspecified filters get permissive defaults.
        """
        if not isinstance(market, Market):
            values = {k: dec(v) if k in _DECIMAL_FIELDS and v is not None else v for k, v in kwargs.items()}
            values.setdefault("tick", Decimal("0.0001"))
            values.setdefault("qty_step", Decimal(1))
            values.setdefault("min_qty", values["qty_step"])
            values.setdefault("max_qty", Decimal(10_000_000))
            market = Market(base=market.upper(), price=dec(price), **values)
        self.engine.add_market(market)
        return market

    def set_balance(
        self,
        amount: object,
        coin: str = "USDT",
        *,
        account: str | None = None,
        venue: str | None = None,
    ) -> None:
        """Set the wallet balance of ``coin`` (all accounts/venues by default)."""
        with self.engine.lock:
            for acct in self._targets(account, venue):
                acct.balances[coin.upper()] = dec(amount)

    def balance(self, coin: str = "USDT", *, account: str, venue: str) -> Decimal:
        with self.engine.lock:
            acct = self.engine.account(venue, account)
            return acct.balances.get(coin.upper(), Decimal(0))

    def set_position(
        self,
        symbol: str,
        size: object,
        entry_price: object = None,
        *,
        account: str | None = None,
        venue: str | None = None,
        side: str | None = None,
    ) -> None:
        """Force a position in base units (``size`` signed: negative is short).
        With ``side`` ("long"/"short") it is that book of a hedge-mode account."""
        if side not in (None, "long", "short"):
            raise ValueError("side must be long, short or omitted")
        with self.engine.lock:
            market = self.engine.market(symbol)
            for acct in self._targets(account, venue):
                pos = acct.hedge_position(market.symbol, side) if side else acct.position(market.symbol)
                pos.size = dec(size)
                pos.entry_price = dec(entry_price) if entry_price is not None else market.price
                if pos.size == 0:
                    pos.entry_price = Decimal(0)
                pos.created_ms = pos.updated_ms = self.engine.now_ms()

    def position(self, symbol: str, *, account: str, venue: str, side: str | None = None) -> Position:
        """The one-way position, or with ``side`` one book of a hedge-mode account
        (base units, signed)."""
        with self.engine.lock:
            acct = self.engine.account(venue, account)
            market = self.engine.market(symbol)
            if side:
                return copy.deepcopy(acct.hedge_positions.get((market.symbol, side), Position(market.symbol)))
            return copy.deepcopy(acct.positions.get(market.symbol, Position(market.symbol)))

    def set_position_mode(self, mode: str, *, account: str | None = None, venue: str | None = None) -> None:
        """ "one_way" or "hedge" for the linear account (Bitget posMode, OKX posMode).
        Refused, like on the venues, while positions or open orders exist."""
        if mode not in ("one_way", "hedge"):
            raise ValueError("mode must be one_way or hedge")
        with self.engine.lock:
            for acct in self._targets(account, venue):
                self.engine.set_position_mode(acct, mode == "hedge")

    def set_margin_mode(self, symbol: str, mode: str, *, account: str | None = None, venue: str | None = None) -> None:
        """The margin mode ("cross"/"isolated") the venue reports for a symbol."""
        with self.engine.lock:
            for acct in self._targets(account, venue):
                self.engine.set_margin_mode(acct, symbol, mode)

    def set_account_config(self, *, account: str | None = None, venue: str | None = None, **config: str) -> None:
        """Venue account settings: OKX ``acct_lv`` ("1" spot mode, "2" spot and
        futures...), Bitget ``asset_mode`` ("single"/"union")."""
        with self.engine.lock:
            for acct in self._targets(account, venue):
                acct.config.update({k: str(v) for k, v in config.items()})

    def set_leverage(
        self,
        symbol: str,
        leverage: object,
        *,
        account: str | None = None,
        venue: str | None = None,
    ) -> None:
        with self.engine.lock:
            market = self.engine.market(symbol)
            for acct in self._targets(account, venue):
                acct.leverage[market.symbol] = dec(leverage)

    def set_rate_limit(
        self,
        max_per_second: int | None,
        *,
        account: str | None = None,
        venue: str | None = None,
    ) -> None:
        """At most N accepted order creates per rolling second (None = off)."""
        with self.engine.lock:
            for acct in self._targets(account, venue):
                acct.rate_limit_per_second = max_per_second
                acct.create_times.clear()

    def fill_rest(self, order_id: str | None = None, client_order_id: str | None = None) -> list[Order]:
        """Fill what a ``partial_fill`` fault held back (all such orders if no id)."""
        with self.engine.lock:
            if order_id is None and client_order_id is None:
                targets = [o for o in self.engine.ledger if o.pending_qty > 0]
            else:
                targets = self.engine.find_any(order_id, client_order_id)
            for order in targets:
                self.engine.fill_rest(order)
            return [copy.deepcopy(o) for o in targets]

    def set_clock_offset(self, offset_ms: int) -> None:
        """Skew the emulator's clock (server time, recv-window checks)."""
        with self.engine.lock:
            self.engine.clock_offset_ms = int(offset_ms)

    def reset(self) -> None:
        """Back to the initial state: markets and prices as constructed, no
        orders, positions, balance changes, rate limits, clock skew, faults,
        recorded requests, stream connections (dropped) or listenKeys.
        Accounts (keys and secrets) are kept."""
        self.streams.reset()
        self.engine.reset()
        self.clear_faults()
        self.clear_requests()

    # ------------------------------------------------------ HTTP serving
    def _venue_for(self, path: str) -> Venue | None:
        if path.startswith("/v5/"):
            return self.bybit
        if path.startswith(("/fapi/", "/sapi/")):
            return self.binance
        if path.startswith(("/api/v2/", "/api/v3/")):
            return self.bitget
        if path.startswith("/api/v5/"):
            return self.okx
        return None

    def _serve(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        if is_upgrade(h.headers) and not split.path.startswith("/__emulator"):
            self._serve_stream(h, split)
            return
        try:
            length = int(h.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            # ccxt (via requests) always sends Content-Length.
            h.close_connection = True
            self._send(h, WireResponse(400, b"Content-Length required", "text/plain"))
            return
        raw_body = h.rfile.read(length) if length > 0 else b""
        if split.path.startswith("/__emulator"):
            self._send(h, self._admin(h.command, split.path, split.query, raw_body))
            return
        req = WireRequest(
            method=h.command,
            path=split.path,
            query=split.query,
            body=raw_body.decode("utf-8", "replace"),
            headers={k.lower(): v for k, v in h.headers.items()},
            recv_wall=h.recv_wall,
            recv_mono=h.recv_mono,
        )
        venue = self._venue_for(req.path)
        if venue is not None:
            req.venue = venue.name
            venue.describe(req)
        record = RequestRecord(
            seq=next(self._seq),
            recv_mono=req.recv_mono,
            recv_wall=req.recv_wall,
            method=req.method,
            path=req.path,
            # Signatures are not secrets, but they are noise in the log.
            query=_SIGNATURE_RE.sub("", req.query).lstrip("&"),
            venue=req.venue,
            operation=req.operation,
            account=req.account,
            symbol=req.symbol,
            client_order_id=req.client_order_id,
            host=req.header("x-forwarded-host") or req.header("host"),
            params=dict(req.params),
        )
        with self._records_lock:
            self._records.append(record)
        if venue is None:
            self._finish(h, record, WireResponse(404, b"", "text/plain", outcome="not_found"))
            return

        facts = RequestFacts(
            venue=req.venue,
            method=req.method,
            path=req.path,
            operation=req.operation,
            account=req.account,
            symbol=req.symbol,
            client_order_id=req.client_order_id,
        )
        rules = self._faults.take(facts)
        record.faults = [r.action for r in rules]

        delay_ms = sum(r.ms for r in rules if r.action == "latency_ms")
        if delay_ms > 0 and self._stop.wait(delay_ms / 1000.0):
            self._drop(h, record, "stopped")
            return

        for rule in rules:
            if rule.action == "drop_connection" and rule.when == "before":
                self._drop(h, record, "fault:drop_connection:before")
                return
            if rule.action in _PRE_ACTIONS:
                self._finish(h, record, self._fault_response(rule, venue))
                return

        effects = BookingEffects(fault_names=list(record.faults))
        for rule in rules:
            if rule.action == "partial_fill":
                effects.partial_fraction = rule.fraction
                effects.fill_after_lookups = rule.fill_after_lookups
            elif rule.action == "invisible_for_ms":
                effects.invisible_ms = rule.ms

        try:
            resp = venue.handle(req, effects)
        except Reject as exc:  # a rejection that escaped a handler
            resp = json_response(400, {"error": str(exc)}, code=None, outcome="rejected")
        except Exception:
            log.exception("emulator bug while serving %s %s", req.method, req.path)
            resp = WireResponse(500, b"emulator error", "text/plain", outcome="emulator_error")
        record.booked = resp.booked
        record.order_id = resp.order_id

        prefix = "booked+" if resp.booked else ""
        for rule in rules:
            if rule.action == "timeout_after_booking":
                if rule.close:
                    self._drop(h, record, f"{prefix}fault:timeout_after_booking:close")
                    return
                record.outcome = f"{prefix}fault:timeout_after_booking"
                if self._stop.wait(rule.ms / 1000.0):
                    self._drop(h, record, record.outcome)
                    return
                resp.outcome = record.outcome
            elif rule.action == "http_5xx_after_booking":
                fault_resp = self._fault_response(rule, venue)
                fault_resp.outcome = f"{prefix}{fault_resp.outcome}"
                fault_resp.booked, fault_resp.order_id = resp.booked, resp.order_id
                resp = fault_resp
            elif rule.action == "drop_connection" and rule.when == "after":
                self._drop(h, record, f"{prefix}fault:drop_connection:after")
                return
        self._finish(h, record, resp)

    def _serve_stream(self, h: _Handler, split) -> None:
        """A private stream's WebSocket upgrade: HTTP faults, then the stream hub."""
        h.close_connection = True
        stream = self.streams.venue_for(split.path)
        venue = stream.venue if stream is not None else None
        record = RequestRecord(
            seq=next(self._seq),
            recv_mono=h.recv_mono,
            recv_wall=h.recv_wall,
            method=h.command,
            path=split.path,
            query="",  # a listenKey is a credential: not logged
            venue=venue,
            operation="stream_connect",
            host=h.headers.get("X-Forwarded-Host") or h.headers.get("Host"),
        )
        with self._records_lock:
            self._records.append(record)
        facts = RequestFacts(venue=venue, method=h.command, path=split.path, operation="stream_connect")
        rules = self._faults.take(facts)
        record.faults = [r.action for r in rules]
        delay_ms = sum(r.ms for r in rules if r.action == "latency_ms")
        if delay_ms > 0 and self._stop.wait(delay_ms / 1000.0):
            self._drop(h, record, "stopped")
            return
        for rule in rules:
            if rule.action == "drop_connection":
                self._drop(h, record, "fault:drop_connection")
                return
            if rule.action in ("http_status", "http_5xx_before_booking"):
                self._finish(h, record, self._fault_response(rule, self.bybit))
                return
        query = dict(parse_qsl(split.query))
        refusal = self.streams.serve(h.connection, h.rfile, h.headers, split.path, query, record)
        if refusal is not None:
            self._finish(h, record, refusal)

    @staticmethod
    def _fault_response(rule: FaultRule, venue: Venue) -> WireResponse:
        if rule.action == "ret_code":
            if rule.code is None:
                raise ValueError("ret_code fault needs a code")
            return venue.fault_error(rule.code, rule.msg, rule.status)
        default = 503 if rule.action.startswith("http_5xx") else 429
        status = rule.status or default
        if rule.body == "empty":
            body, ctype = b"", "text/plain"
        elif rule.body == "html":
            body, ctype = _HTML_5XX.format(status=status).encode(), "text/html"
        else:
            body = rule.body.encode()
            is_json = rule.body.lstrip().startswith(("{", "["))
            ctype = "application/json" if is_json else "text/plain"
        return WireResponse(status, body, ctype, outcome=f"fault:{rule.action}:{status}")

    def _finish(self, h: _Handler, record: RequestRecord, resp: WireResponse) -> None:
        record.status = resp.status
        record.code = resp.code
        record.outcome = resp.outcome
        record.done_mono = time.monotonic()
        self._send(h, resp)

    def _drop(self, h: _Handler, record: RequestRecord, outcome: str) -> None:
        record.outcome = outcome
        record.status = None
        record.done_mono = time.monotonic()
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @staticmethod
    def _send(h: _Handler, resp: WireResponse) -> None:
        reason = h.responses.get(resp.status, ("",))[0]
        lines = [
            f"HTTP/1.1 {resp.status} {reason}",
            f"Date: {h.date_time_string()}",
            f"Content-Type: {resp.content_type}",
            f"Content-Length: {len(resp.body)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if h.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            # One write, one send(): see the module docstring.
            h.wfile.write(head + resp.body)
        except OSError:
            # The client gave up (e.g. after a held response); nothing to do.
            h.close_connection = True

    # ------------------------------------------------------------- admin
    def _admin(self, method: str, path: str, query: str, raw: bytes) -> WireResponse:
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return json_response(400, {"error": "body is not JSON"}, code=None)
        q = dict(parse_qsl(query))
        route = path[len("/__emulator") :].strip("/")
        try:
            return self._admin_route(method, route, q, data)
        except (ValueError, TypeError, KeyError, Reject) as exc:
            return json_response(400, {"error": str(exc)}, code=None)

    def _admin_route(self, method: str, route: str, q: dict, data) -> WireResponse:
        def ok(obj: object = None) -> WireResponse:
            return json_response(200, {"ok": True} if obj is None else obj, code=None)

        if route == "health" and method == "GET":
            return ok({"ok": True, "url": self.url, "venues": list(VENUES)})
        if route == "faults":
            if method == "GET":
                return ok([r.as_dict() for r in self.faults()])
            if method == "DELETE":
                self.clear_faults()
                return ok()
            if method == "POST":
                items = data if isinstance(data, list) else [data]
                added = [self.add_fault_rule(dict(item)) for item in items]
                return ok({"ok": True, "ids": [r.id for r in added]})
        if route.startswith("faults/") and method == "DELETE":
            return ok({"ok": self.remove_fault(int(route.split("/", 1)[1]))})
        if route == "reset" and method == "POST":
            self.reset()
            return ok()
        if route == "requests" and method == "GET":
            records = self.requests(
                q.get("path_contains"),
                venue=q.get("venue"),
                operation=q.get("operation"),
                account=q.get("account"),
                symbol=q.get("symbol"),
                client_order_id=q.get("client_order_id"),
            )
            if q.get("limit"):
                records = records[-int(q["limit"]) :]
            return ok([r.as_dict() for r in records])
        if route == "requests" and method == "DELETE":
            self.clear_requests()
            return ok()
        if route == "orders" and method == "GET":
            orders = self.orders(
                venue=q.get("venue"),
                account=q.get("account"),
                symbol=q.get("symbol"),
                client_order_id=q.get("client_order_id"),
            )
            return ok([o.as_dict() for o in orders])
        if route == "rate_limit_violations" and method == "GET":
            return ok(self.rate_limit_violations(account=q.get("account"), venue=q.get("venue")))
        if route == "streams" and method == "GET":
            return ok([c.as_dict() for c in self.streams.connections(q.get("venue"), q.get("account"))])
        if method != "POST":
            return json_response(404, {"error": f"no admin route {method} {route}"}, code=None)
        target = {"account": data.get("account"), "venue": data.get("venue")}
        if route == "price":
            filled = self.set_price(data["symbol"], data["price"])
            return ok({"ok": True, "filled": [o.order_id for o in filled]})
        if route == "balance":
            self.set_balance(data["amount"], data.get("coin", "USDT"), **target)
            return ok()
        if route == "position":
            self.set_position(data["symbol"], data["size"], data.get("entry_price"), side=data.get("side"), **target)
            return ok()
        if route == "position_mode":
            self.set_position_mode(data["mode"], **target)
            return ok()
        if route == "margin_mode":
            self.set_margin_mode(data["symbol"], data["mode"], **target)
            return ok()
        if route == "account_config":
            self.set_account_config(**target, **{k: v for k, v in data.items() if k not in target})
            return ok()
        if route == "leverage":
            self.set_leverage(data["symbol"], data["leverage"], **target)
            return ok()
        if route == "rate_limit":
            self.set_rate_limit(data.get("max_per_second"), **target)
            return ok()
        if route == "fill_rest":
            filled = self.fill_rest(data.get("order_id"), data.get("client_order_id"))
            return ok({"ok": True, "orders": [o.order_id for o in filled]})
        if route == "clock":
            self.set_clock_offset(int(data.get("offset_ms", 0)))
            return ok()
        if route == "market":
            market = self.add_market(data.pop("base"), data.pop("price"), **data)
            return ok({"ok": True, "symbol": market.symbol})
        if route == "streams/drop":
            return ok({"ok": True, "dropped": self.streams.drop(**target)})
        if route == "streams/expire_listen_keys":
            return ok({"ok": True, "expired": self.streams.binance.keys.expire(data.get("account"))})
        if route == "streams/listen_key_ttl":
            self.streams.binance.keys.set_ttl(float(data["seconds"]))
            return ok()
        return json_response(404, {"error": f"no admin route POST {route}"}, code=None)
