"""Private WebSocket streams of the emulated venues, pushed from the order engine.

:class:`StreamHub` owns every open stream connection. It is an observer of the
:class:`~emulator.engine.Engine`: each order state change is rendered, in the
venue's own message shapes, for every connection of that account that
subscribed to it, and queued on the connection at once (under the engine lock,
so pushes leave in the order the changes happened). Stream faults
(``stream_drop``, ``stream_delay_ms``, ``stream_silent``, see
:mod:`emulator.faults`) are applied per push.

A venue's stream format is a small module of this package implementing
:class:`VenueStream` (``bybit.py``, ``binance.py``); adding a venue means adding
one module and listing it in :meth:`StreamHub.__init__`:

* ``matches(path)``: does a WebSocket URL path belong to this venue;
* ``on_open(conn)``: accept (``None``) or refuse (a ``WireResponse``) the
  upgrade; a venue that authenticates by URL (Binance's listenKey) binds the
  account here with :meth:`StreamHub.bind`;
* ``on_text(conn, text)``: a client message (auth, ping, subscribe...);
  answer with :meth:`StreamConnection.reply`;
* ``render(conn, event)``: the :class:`Push` messages an
  :class:`~emulator.engine.OrderEvent` produces for this connection
  (``[]`` if it did not subscribe), built while the engine lock is held.

Connections are served by the HTTP server's per-connection threads (see
:mod:`emulator.ws`), so a venue module's ``on_text`` runs in that thread and
``render`` in whichever thread changed the order.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..engine import Engine, OrderEvent
from ..faults import STREAM_ACTIONS, FaultBook, RequestFacts
from ..wire import WireResponse, json_response
from ..ws import WebSocket, accept_key, handshake_error

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Push", "StreamConnection", "StreamHub", "VenueStream"]

log = logging.getLogger(__name__)


@dataclass
class Push:
    """One message a stream sends for an order event."""

    topic: str
    payload: dict
    symbol: str | None = None
    client_order_id: str | None = None


class VenueStream(Protocol):
    venue: str

    def matches(self, path: str) -> bool: ...

    def on_open(self, conn: StreamConnection) -> WireResponse | None: ...

    def on_text(self, conn: StreamConnection, text: str) -> None: ...

    def render(self, conn: StreamConnection, event: OrderEvent) -> list[Push]: ...


@dataclass
class StreamConnection:
    """One open private stream."""

    id: int
    venue: VenueStream = field(repr=False)
    path: str
    query: dict = field(repr=False)
    hub: StreamHub = field(repr=False)
    conn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:20])
    account: str | None = None
    topics: set[str] = field(default_factory=set)
    opened_wall: float = field(default_factory=time.time)
    pushes_sent: int = 0
    pushes_swallowed: int = 0
    # Venue-specific state (e.g. Binance's listenKey).
    listen_key: str | None = None
    ended: bool = False  # the venue stopped serving it (e.g. listenKey expired)
    ws: WebSocket | None = field(default=None, repr=False)
    record: object = field(default=None, repr=False)

    def reply(self, obj: object) -> None:
        """Send an answer to the client (auth, subscribe, pong...)."""
        if self.ws is not None:
            self.ws.send_text(json.dumps(obj, separators=(",", ":")))

    def facts(self, operation: str, symbol: str | None = None, client_order_id: str | None = None) -> RequestFacts:
        return RequestFacts(
            venue=self.venue.venue,
            method="WS",
            path=self.path,
            operation=operation,
            account=self.account,
            symbol=symbol,
            client_order_id=client_order_id,
        )

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "venue": self.venue.venue,
            "path": self.path,
            "conn_id": self.conn_id,
            "account": self.account,
            "topics": sorted(self.topics),
            "opened_wall": self.opened_wall,
            "pushes_sent": self.pushes_sent,
            "pushes_swallowed": self.pushes_swallowed,
            "listen_key": self.listen_key,
            "ended": self.ended,
            "closed": self.ws is None or self.ws.closed,
            "frames_muted": self.ws.frames_muted if self.ws is not None else 0,
        }


class StreamHub:
    """Every open stream connection, fed by the engine's order events."""

    def __init__(
        self,
        engine: Engine,
        faults: FaultBook,
        secret_for: Callable[[str], str | None],
        rest: dict[str, object],
    ) -> None:
        from .binance import BinanceStream
        from .bybit import BybitStream

        self.engine = engine
        self.faults = faults
        self.secret_for = secret_for
        # The REST venue modules, whose row builders the streams reuse.
        self.rest = rest
        self.bybit = BybitStream(self)
        self.binance = BinanceStream(self)
        self.venues: list[VenueStream] = [self.bybit, self.binance]
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._conns: dict[int, StreamConnection] = {}
        self._by_account: dict[tuple[str, str], list[StreamConnection]] = {}
        engine.add_observer(self.on_event)

    # ------------------------------------------------------------ serving
    def venue_for(self, path: str) -> VenueStream | None:
        for venue in self.venues:
            if venue.matches(path):
                return venue
        return None

    def serve(self, sock, rfile, headers, path: str, query: dict, record) -> WireResponse | None:
        """Handle an upgrade request: a refusal to send back, or ``None`` once the
        accepted connection has ended (it is served in the calling thread)."""
        venue = self.venue_for(path)
        if venue is None:
            return json_response(404, {"error": f"no private stream at {path}"}, code=None, outcome="not_found")
        bad = handshake_error(headers)
        if bad is not None:
            return json_response(400, {"error": bad}, code=None, outcome="bad_handshake")
        conn = StreamConnection(id=next(self._ids), venue=venue, path=path, query=query, hub=self, record=record)
        refusal = venue.on_open(conn)
        if refusal is not None:
            return refusal
        head = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers.get('Sec-WebSocket-Key', ''))}\r\n\r\n"
        )
        conn.ws = WebSocket(sock, rfile, name=f"stream-{conn.id}")
        conn.ws.mute = lambda: self._silenced(conn)
        # Registered and answered in one step under the engine lock, the answer first in
        # the connection's queue: no order event falls between the two, so a client that
        # sees the upgrade misses no push, and no push overtakes the upgrade.
        with self.engine.lock, self._lock:
            self._conns[conn.id] = conn
            if conn.account is not None:
                self._by_account.setdefault((venue.venue, conn.account), []).append(conn)
            conn.ws.send_raw(head.encode("ascii"))
        record.status, record.outcome, record.done_mono = 101, "upgraded", time.monotonic()
        try:
            conn.ws.serve(lambda text: self._on_text(conn, text))
        finally:
            self._forget(conn)
        return None

    def _on_text(self, conn: StreamConnection, text: str) -> None:
        try:
            conn.venue.on_text(conn, text)
        except Exception:
            log.exception("emulator stream: %s failed on a client message", conn.venue.venue)

    def bind(self, conn: StreamConnection, account: str) -> None:
        """The connection now belongs to ``account`` (authenticated)."""
        with self._lock:
            if conn.account is not None:
                return
            conn.account = account
            if conn.id in self._conns:
                self._by_account.setdefault((conn.venue.venue, account), []).append(conn)
        if conn.record is not None:
            conn.record.account = account

    def _forget(self, conn: StreamConnection) -> None:
        with self._lock:
            self._conns.pop(conn.id, None)
            if conn.account is not None:
                peers = self._by_account.get((conn.venue.venue, conn.account), [])
                if conn in peers:
                    peers.remove(conn)

    # ------------------------------------------------------------ pushing
    def on_event(self, event: OrderEvent) -> None:
        """Engine observer (runs under the engine lock)."""
        conns = self._by_account.get((event.order.venue, event.order.account))
        if not conns:
            return
        for conn in list(conns):
            if conn.ws is None or conn.ws.closed or conn.ended:
                continue
            for push in conn.venue.render(conn, event):
                self.deliver(conn, push)

    def deliver(self, conn: StreamConnection, push: Push) -> None:
        """Send one push, through the stream fault rules."""
        facts = conn.facts("stream_push", push.symbol, push.client_order_id)
        rules = self.faults.take(facts, STREAM_ACTIONS)
        if any(r.action == "stream_silent" for r in rules):
            conn.pushes_swallowed += 1
            return
        drops = [r for r in rules if r.action == "stream_drop"]
        if any(r.when == "before" for r in drops):
            conn.ws.drop()
            return
        delay = sum(r.ms for r in rules if r.action == "stream_delay_ms")
        conn.ws.send_text(json.dumps(push.payload, separators=(",", ":")), delay_ms=delay)
        conn.pushes_sent += 1
        if drops:
            conn.ws.drop_after_queued()

    def _silenced(self, conn: StreamConnection) -> bool:
        return bool(self.faults.active(conn.facts("stream_reply"), frozenset({"stream_silent"})))

    # -------------------------------------------------------------- admin
    def connections(self, venue: str | None = None, account: str | None = None) -> list[StreamConnection]:
        with self._lock:
            conns = list(self._conns.values())
        return [
            c for c in conns if (venue is None or c.venue.venue == venue) and (account is None or c.account == account)
        ]

    def drop(self, venue: str | None = None, account: str | None = None) -> int:
        """Cut matching connections now (no close frame), as a network failure would."""
        conns = self.connections(venue, account)
        for conn in conns:
            if conn.ws is not None:
                conn.ws.drop()
        return len(conns)

    def reset(self) -> None:
        """Drop every connection and forget every listenKey."""
        self.drop()
        self.binance.keys.reset()

    def stop(self) -> None:
        self.drop()
        self.binance.keys.stop()
