"""Binance USD-M user data stream (``wss://fstream.binance.com/...``).

A listenKey comes from ``POST /fapi/v1/listenKey`` (API key header only, no
signature; an account with an active key gets the same key back, extended),
is kept alive with ``PUT`` and closed with ``DELETE`` (see
:class:`ListenKeys`). It is valid for ``ttl`` seconds (60 minutes, like the
venue) after its last POST/PUT; a PUT on an unknown or expired key answers
``-1125 This listenKey does not exist.``

The stream is the listenKey in the URL: ``/ws/<listenKey>``,
``/private/ws/<listenKey>`` or ``/private/ws?listenKey=<listenKey>`` (the
routed form ccxt 4.5 uses). An unknown key is refused at the handshake with
HTTP 400 and that -1125 body (the emulator's choice). When a key expires,
each of its connections gets ``{"e": "listenKeyExpired", ...}`` and nothing
after it, but stays open, as Binance documents; a ``DELETE`` closes them.

Per order event: ``ORDER_TRADE_UPDATE`` with ``x=NEW`` when booked (also for
a market order that fills at once, as on the venue), one with ``x=TRADE`` per
fill (``n``/``N`` the fill's commission, ``rp`` its realised profit), one with
``x=CANCELED`` when cancelled, and an ``ACCOUNT_UPDATE`` (wallet and the
position) after fills.
"""

from __future__ import annotations

import json
import secrets
import string
import threading
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from ..binance import _STATUS, _TIF_OUT
from ..engine import Execution, Order, OrderEvent
from ..markets import fmt
from ..wire import WireResponse, json_response
from . import Push, StreamConnection

if TYPE_CHECKING:
    from . import StreamHub

__all__ = ["BinanceStream", "ListenKeys"]

LISTEN_KEY_TTL_S = 3600.0
_ALPHABET = string.ascii_letters + string.digits
_NO_KEY = {"code": -1125, "msg": "This listenKey does not exist."}


class _Key:
    __slots__ = ("account", "expires_mono", "key")

    def __init__(self, key: str, account: str, expires_mono: float) -> None:
        self.key = key
        self.account = account
        self.expires_mono = expires_mono


class ListenKeys:
    """Active listenKeys (one per account) and their expiry."""

    def __init__(self, stream: BinanceStream, ttl_s: float = LISTEN_KEY_TTL_S) -> None:
        self.stream = stream
        self.ttl_s = ttl_s
        self._cond = threading.Condition()
        self._by_account: dict[str, _Key] = {}
        self._by_key: dict[str, _Key] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    def create(self, account: str) -> str:
        with self._cond:
            current = self._by_account.get(account)
            if current is None:
                key = "".join(secrets.choice(_ALPHABET) for _ in range(64))
                current = _Key(key, account, 0.0)
                self._by_account[account] = current
                self._by_key[key] = current
            current.expires_mono = time.monotonic() + self.ttl_s
            self._ensure_thread()
            self._cond.notify_all()
            return current.key

    def keepalive(self, account: str) -> str | None:
        with self._cond:
            current = self._by_account.get(account)
            if current is None:
                return None
            current.expires_mono = time.monotonic() + self.ttl_s
            self._cond.notify_all()
            return current.key

    def delete(self, account: str) -> str | None:
        with self._cond:
            current = self._by_account.pop(account, None)
            if current is None:
                return None
            self._by_key.pop(current.key, None)
        for conn in self.stream.connections_of(current.key):
            conn.ended = True
            conn.ws.send_close(1000, "listenKey deleted")
        return current.key

    def account_for(self, key: str) -> str | None:
        with self._cond:
            current = self._by_key.get(key)
            if current is None or current.expires_mono <= time.monotonic():
                return None
            return current.account

    def expire(self, account: str | None = None) -> int:
        """Expire keys now (all, or ``account``'s), as if no keepalive had come."""
        with self._cond:
            due = [k for k in self._by_account.values() if account is None or k.account == account]
            for k in due:
                self._drop_key(k)
        for k in due:
            self.stream.expired(k.key)
        return len(due)

    def set_ttl(self, seconds: float) -> None:
        """Validity of keys from their next POST/PUT on."""
        if seconds <= 0:
            raise ValueError("listenKey ttl must be > 0 seconds")
        with self._cond:
            self.ttl_s = float(seconds)

    def reset(self) -> None:
        with self._cond:
            self._by_account.clear()
            self._by_key.clear()
            self.ttl_s = LISTEN_KEY_TTL_S
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def _drop_key(self, k: _Key) -> None:
        self._by_account.pop(k.account, None)
        self._by_key.pop(k.key, None)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._expiry_loop, name="emulator-listenkeys", daemon=True)
            self._thread.start()

    def _expiry_loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                due = [k for k in self._by_account.values() if k.expires_mono <= now]
                for k in due:
                    self._drop_key(k)
                if not due:
                    nearest = min((k.expires_mono for k in self._by_account.values()), default=None)
                    self._cond.wait(None if nearest is None else max(0.0, nearest - now))
                    continue
            for k in due:
                self.stream.expired(k.key)


class BinanceStream:
    venue = "binance"

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.keys = ListenKeys(self)

    # -------------------------------------------------------------- serving
    def matches(self, path: str) -> bool:
        return path in ("/ws", "/private/ws") or path.startswith(("/ws/", "/private/ws/"))

    def on_open(self, conn: StreamConnection) -> WireResponse | None:
        tail = conn.path.rstrip("/").rsplit("/", 1)[-1]
        key = conn.query.get("listenKey") or ("" if tail == "ws" else tail)
        account = self.keys.account_for(key) if key else None
        if account is None:
            return json_response(400, _NO_KEY, code=-1125, outcome="rejected:-1125")
        conn.listen_key = key
        self.hub.bind(conn, account)
        return None

    def on_text(self, conn: StreamConnection, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("method") in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS"):
            result = [] if msg["method"] == "LIST_SUBSCRIPTIONS" else None
            conn.reply({"result": result, "id": msg.get("id")})
            return
        request_id = msg.get("id") if isinstance(msg, dict) else None
        conn.reply({"error": {"code": 2, "msg": "Invalid request: unknown method"}, "id": request_id})

    def connections_of(self, key: str) -> list[StreamConnection]:
        return [c for c in self.hub.connections(venue="binance") if c.listen_key == key and c.ws is not None]

    def expired(self, key: str) -> None:
        """Tell the key's connections, which then get nothing more."""
        with self.hub.engine.lock:
            for conn in self.connections_of(key):
                if conn.ended:
                    continue
                payload = {"e": "listenKeyExpired", "E": self.hub.engine.now_ms(), "listenKey": key}
                self.hub.deliver(conn, Push("listenKeyExpired", payload))
                conn.ended = True

    # --------------------------------------------------------------- pushes
    def render(self, conn: StreamConnection, event: OrderEvent) -> list[Push]:
        order = event.order
        if order.category != "linear":
            return []
        pushes = []
        if event.kind == "placed":
            pushes.append(self._order_update(order, "NEW", "NEW", None))
        for e in event.executions:
            pushes.append(self._order_update(order, "TRADE", _STATUS.get(e.order_status, "NEW"), e))
        if event.kind == "cancelled":
            pushes.append(self._order_update(order, "CANCELED", "CANCELED", None))
        if event.executions:
            pushes.append(self._account_update(event, event.executions[-1].time_ms))
        return pushes

    def _order_update(self, o: Order, x: str, status: str, e: Execution | None) -> Push:
        cum_qty = e.cum_qty if e is not None else (o.cum_qty if x == "CANCELED" else 0)
        cum_value = e.cum_value if e is not None else (o.cum_value if x == "CANCELED" else 0)
        tick = self.hub.engine.markets[o.symbol].tick
        avg = (cum_value / cum_qty).quantize(tick) if cum_qty else 0
        when = e.time_ms if e is not None else (o.created_ms if x == "NEW" else o.updated_ms)
        body = {
            "s": o.symbol,
            "c": o.client_order_id,
            "S": o.side.upper(),
            "o": o.order_type.upper(),
            "f": _TIF_OUT.get(o.time_in_force, o.time_in_force),
            "q": fmt(o.qty),
            "p": fmt(o.price) if o.price is not None else "0",
            "ap": fmt(avg) if cum_qty else "0",
            "sp": "0",
            "x": x,
            "X": status,
            "i": int(o.order_id),
            "l": fmt(e.qty) if e is not None else "0",
            "z": fmt(cum_qty) if cum_qty else "0",
            "L": fmt(e.price) if e is not None else "0",
        }
        if e is not None:
            body["N"] = e.fee_coin
            body["n"] = fmt(e.fee)
        body.update(
            {
                "T": when,
                "t": e.seq if e is not None else 0,
                "b": "0",
                "a": "0",
                "m": e.is_maker if e is not None else False,
                "R": o.reduce_only,
                "wt": "CONTRACT_PRICE",
                "ot": o.order_type.upper(),
                "ps": "BOTH",
                "cp": False,
                "rp": fmt(e.realised_pnl) if e is not None else "0",
                "pP": False,
                "si": 0,
                "ss": 0,
                "V": "EXPIRE_MAKER",
                "pm": "NONE",
                "gtd": 0,
            }
        )
        payload = {"e": "ORDER_TRADE_UPDATE", "E": self.hub.engine.now_ms(), "T": when, "o": body}
        return Push("order", payload, o.symbol, o.client_order_id)

    def _account_update(self, event: OrderEvent, when: int) -> Push:
        acct, order = event.account, event.order
        wallet = acct.balances.get("USDT", Decimal(0))
        pos = acct.positions.get(order.symbol)
        size = pos.size if pos else 0
        entry = pos.entry_price if pos else 0
        position = {
            "s": order.symbol,
            "pa": fmt(size) if size else "0",
            "ep": fmt(entry) if entry else "0",
            "bep": fmt(entry) if entry else "0",
            "cr": fmt(pos.cum_realised_pnl) if pos and pos.cum_realised_pnl else "0",
            "up": fmt(self.hub.engine.unrealised(acct, order.symbol)) if size else "0",
            "mt": "cross",
            "iw": "0",
            "ps": "BOTH",
            "ma": "USDT",
        }
        payload = {
            "e": "ACCOUNT_UPDATE",
            "E": self.hub.engine.now_ms(),
            "T": when,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": fmt(wallet), "cw": fmt(wallet), "bc": "0"}],
                "P": [position],
            },
        }
        return Push("account", payload, order.symbol, order.client_order_id)
