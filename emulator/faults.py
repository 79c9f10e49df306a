"""Fault-injection rules for the exchange emulator.

A :class:`FaultRule` says *what* to break (``action``) and *which* requests it
applies to (endpoint, venue, method, account, symbol, client order id), for
the next ``count`` matching requests or for all of them (``count=None``).
Rules are settable in-process (``ExchangeEmulator.add_fault``) and over HTTP
(``POST /__emulator/faults`` with the same fields as JSON).

Matching a request consumes one unit of ``count`` of every rule that matches,
even if the request then fails for another reason (e.g. a bad signature):
a fault models the network or the venue's gateway, which sits in front of
authentication and order validation.

Actions and their parameters:

============================  ===============================================
``latency_ms``                ``ms``: sleep before processing (other requests
                              are served meanwhile)
``timeout_after_booking``     ``ms``: process (book), then hold the response
                              ``ms`` so the client times out; ``close=True``
                              closes the connection after booking instead
``http_5xx_before_booking``   ``status`` (503), ``body`` ("empty" | "html" |
                              any literal text); nothing is processed
``http_5xx_after_booking``    same, but the request is processed first
``ret_code``                  ``code``, optional ``msg`` / ``status``: answer
                              with a venue error code, nothing is processed
``http_status``               ``status`` (429, 403...), ``body`` ("empty");
                              nothing is processed
``partial_fill``              ``fraction`` (0.5), optional
                              ``fill_after_lookups``: a marketable order
                              fills only partly; the rest fills on
                              ``fill_rest()`` or after N lookups
``invisible_for_ms``          ``ms``: the booked order is not returned by
                              lookups (nor cancellable) for ``ms``
``drop_connection``           ``when`` ("before" | "after"): close the socket
                              without any response, before or after
                              processing
============================  ===============================================

The HTTP actions above also apply to a private stream's WebSocket handshake
(operation ``stream_connect``): e.g. ``http_status`` refuses the connection,
``drop_connection`` cuts it before the upgrade.

Stream actions apply to what a private WebSocket stream sends (operation
``stream_push`` for order/execution/position pushes, ``stream_reply`` for
answers to the client: auth, subscribe, pong), never to HTTP requests:

============================  ===============================================
``stream_drop``               ``when`` ("before" | "after"): on the next
                              matching push, cut the connection (no close
                              frame) before or after sending it
``stream_delay_ms``           ``ms``: hold matching pushes that long (the
                              ones behind them wait too: one TCP stream)
``stream_silent``             matching pushes are swallowed (each consumes
                              ``count``); while the rule exists, the
                              connection sends nothing at all - no replies,
                              no pongs, not even to protocol pings: a stalled
                              gateway whose socket stays open
============================  ===============================================
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict, dataclass, field, fields

__all__ = ["ACTIONS", "HTTP_ACTIONS", "STREAM_ACTIONS", "FaultBook", "FaultRule", "RequestFacts"]

HTTP_ACTIONS = frozenset(
    {
        "latency_ms",
        "timeout_after_booking",
        "http_5xx_before_booking",
        "http_5xx_after_booking",
        "ret_code",
        "http_status",
        "partial_fill",
        "invisible_for_ms",
        "drop_connection",
    }
)
STREAM_ACTIONS = frozenset({"stream_drop", "stream_delay_ms", "stream_silent"})
ACTIONS = HTTP_ACTIONS | STREAM_ACTIONS

_ids = itertools.count(1)


@dataclass
class RequestFacts:
    """What a rule can match on, extracted from one incoming request."""

    venue: str | None
    method: str
    path: str
    operation: str
    account: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None


@dataclass
class FaultRule:
    """One fault rule. Unset match fields match everything."""

    action: str
    endpoint: str | None = None
    method: str | None = None
    venue: str | None = None
    account: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None
    count: int | None = 1
    # Action parameters (each action reads the ones it needs).
    ms: float = 0.0
    status: int | None = None
    body: str = "empty"
    code: int | None = None
    msg: str | None = None
    fraction: float = 0.5
    fill_after_lookups: int | None = None
    when: str = "before"
    close: bool = False
    # Bookkeeping.
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; one of {sorted(ACTIONS)}")
        if self.when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 or None (always)")
        if self.action in ("latency_ms", "invisible_for_ms", "stream_delay_ms") and self.ms <= 0:
            raise ValueError(f"{self.action} needs ms > 0")
        if self.action == "timeout_after_booking" and self.ms <= 0 and not self.close:
            raise ValueError("timeout_after_booking needs ms > 0 or close=True")
        if self.action == "ret_code" and self.code is None:
            raise ValueError("ret_code needs a code")
        if self.action == "partial_fill" and not 0 < self.fraction < 1:
            raise ValueError("partial_fill fraction must be between 0 and 1")
        if self.symbol:
            # Accept unified and OKX symbols too: 'BTC/USDT:USDT', 'BTC-USDT-SWAP' -> 'BTCUSDT'.
            symbol = self.symbol.split(":", 1)[0].upper()
            symbol = symbol[: -len("-SWAP")] if symbol.endswith("-SWAP") else symbol
            self.symbol = symbol.replace("/", "").replace("-", "")
        if self.method:
            self.method = self.method.upper()

    @classmethod
    def from_dict(cls, data: dict) -> FaultRule:
        """Build a rule from JSON; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)} - {"id", "hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule fields: {sorted(unknown)}")
        return cls(**data)

    def as_dict(self) -> dict:
        return asdict(self)

    def matches(self, facts: RequestFacts) -> bool:
        if self.endpoint and not (self.endpoint == facts.operation or self.endpoint in facts.path):
            return False
        if self.method and self.method != facts.method:
            return False
        if self.venue and self.venue != facts.venue:
            return False
        if self.account and self.account != facts.account:
            return False
        if self.symbol and self.symbol != (facts.symbol or "").upper():
            return False
        return not (self.client_order_id and self.client_order_id != facts.client_order_id)


class FaultBook:
    """Thread-safe rule list; ``take`` matches and consumes atomically."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id: int) -> bool:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, facts: RequestFacts, actions: frozenset[str] = HTTP_ACTIONS) -> list[FaultRule]:
        """Return the rules of ``actions`` that apply to this request, consuming their count."""
        taken = []
        with self._lock:
            keep = []
            for rule in self._rules:
                if rule.action in actions and rule.matches(facts):
                    rule.hits += 1
                    taken.append(rule)
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            continue
                keep.append(rule)
            self._rules = keep
        return taken

    def active(self, facts: RequestFacts, actions: frozenset[str]) -> list[FaultRule]:
        """The rules of ``actions`` that match, without consuming anything."""
        with self._lock:
            return [r for r in self._rules if r.action in actions and r.matches(facts)]
