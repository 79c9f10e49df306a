"""Bybit V5 private stream (``wss://stream.bybit.com/v5/private``).

The client authenticates with ``{"op": "auth", "args": [apiKey, expires,
signature]}``, ``signature = HMAC_SHA256(secret, "GET/realtime" + expires)``
and ``expires`` (ms) still in the future; then subscribes to topics with
``{"op": "subscribe", "req_id": ..., "args": ["order", ...]}`` and keeps the
connection alive with ``{"op": "ping"}``. Served topics: ``order``,
``execution``, ``execution.fast`` and ``position`` (each also per category,
e.g. ``order.linear``). Pushes are ``{"id", "topic", "creationTime", "data":
[...]}`` with the same rows as the REST lists plus ``category``.

Per order event: one ``order`` message with the order as it now stands (a
market order that filled at once is pushed once, ``Filled``), one
``execution`` message with its fills, one ``position`` message if it moved a
position. Answers carry ``conn_id`` and echo ``req_id``; refusals are
``{"success": false, "ret_msg": ...}``. The ``ret_msg`` wording of the
refusals is the emulator's own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import TYPE_CHECKING

from ..engine import OrderEvent
from ..markets import fmt
from . import Push, StreamConnection

if TYPE_CHECKING:
    from . import StreamHub

__all__ = ["BybitStream"]

PATH = "/v5/private"
TOPICS = ("order", "execution", "execution.fast", "position")
CATEGORIES = ("linear", "spot")


class BybitStream:
    venue = "bybit"

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub

    def matches(self, path: str) -> bool:
        return path.rstrip("/") == PATH

    def on_open(self, conn: StreamConnection) -> None:
        return None

    # ----------------------------------------------------------- client ops
    def on_text(self, conn: StreamConnection, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            conn.reply({"success": False, "ret_msg": "error:invalid op", "conn_id": conn.conn_id})
            return
        op = msg.get("op")
        args = msg.get("args") if isinstance(msg.get("args"), list) else []
        base = {"conn_id": conn.conn_id, "op": op}
        if "req_id" in msg:
            base["req_id"] = msg["req_id"]
        if op == "ping":
            conn.reply({**base, "op": "pong", "args": [str(self.hub.engine.now_ms())]})
        elif op == "auth":
            refusal = self._authenticate(conn, args)
            if refusal is None:
                conn.reply({**base, "success": True, "ret_msg": ""})
            else:
                # "request" lets a client tell an auth refusal from others (ccxt does).
                conn.reply({**base, "success": False, "ret_msg": refusal, "request": {"op": "auth", "args": args}})
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(conn, op, args, base)
        else:
            conn.reply({**base, "success": False, "ret_msg": "error:invalid op", "request": {"op": op, "args": args}})

    def _authenticate(self, conn: StreamConnection, args: list) -> str | None:
        if len(args) != 3:
            return "error:params error, args must be [apiKey, expires, signature]"
        key, expires, signature = (str(a) for a in args)
        if conn.account is not None:
            return "error:already authenticated" if conn.account != key else None
        secret = self.hub.secret_for(key)
        if secret is None:
            return "error:API key is invalid"
        if not expires.isdigit() or int(expires) <= self.hub.engine.now_ms():
            return "error:expires is in the past (request expired)"
        expected = hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            return "error:signature verification failed"
        self.hub.bind(conn, key)
        return None

    def _subscribe(self, conn: StreamConnection, op: str, args: list, base: dict) -> None:
        if conn.account is None:
            conn.reply({**base, "success": False, "ret_msg": "Request not authorized"})
            return
        unknown = [t for t in args if not self._known(t)]
        if not args or unknown:
            conn.reply({**base, "success": False, "ret_msg": f"error:topic not served: {unknown or 'none given'}"})
            return
        # Under the engine lock, so no order event slips between the topic
        # change and its acknowledgement.
        with self.hub.engine.lock:
            if op == "subscribe":
                conn.topics.update(args)
            else:
                conn.topics.difference_update(args)
            conn.reply({**base, "success": True, "ret_msg": ""})

    @staticmethod
    def _known(topic: object) -> bool:
        if not isinstance(topic, str):
            return False
        for name in TOPICS:
            if topic == name or (topic.startswith(name + ".") and topic[len(name) + 1 :] in CATEGORIES):
                return True
        return False

    # ---------------------------------------------------------------- pushes
    @staticmethod
    def _wants(conn: StreamConnection, topic: str, category: str) -> bool:
        return topic in conn.topics or f"{topic}.{category}" in conn.topics

    def render(self, conn: StreamConnection, event: OrderEvent) -> list[Push]:
        rest = self.hub.rest["bybit"]
        order, category = event.order, event.order.category
        now = self.hub.engine.now_ms()
        pushes = []

        def envelope(topic: str, rows: list[dict]) -> Push:
            payload = {"id": uuid.uuid4().hex, "topic": topic, "creationTime": now, "data": rows}
            return Push(topic, payload, order.symbol, order.client_order_id)

        if self._wants(conn, "order", category):
            pushes.append(envelope("order", [{"category": category, **rest.order_row(order)}]))
        if event.executions and self._wants(conn, "execution", category):
            rows = [{"category": category, **rest.execution_row(e), "isLeverage": ""} for e in event.executions]
            pushes.append(envelope("execution", rows))
        if event.executions and self._wants(conn, "execution.fast", category):
            fast = [
                {
                    "category": category,
                    "symbol": e.symbol,
                    "execId": e.exec_id,
                    "execPrice": fmt(e.price),
                    "execQty": fmt(e.qty),
                    "orderId": e.order_id,
                    "isMaker": e.is_maker,
                    "orderLinkId": e.client_order_id,
                    "side": e.side,
                    "execTime": str(e.time_ms),
                    "seq": e.seq,
                }
                for e in event.executions
            ]
            pushes.append(envelope("execution.fast", fast))
        if event.executions and category == "linear" and self._wants(conn, "position", category):
            market = self.hub.engine.markets[order.symbol]
            row = rest.position_row(event.account, market)
            row["entryPrice"] = row.pop("avgPrice")
            pushes.append(envelope("position", [{"category": "linear", **row}]))
        return pushes
