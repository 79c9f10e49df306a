"""Small HTTP-level value types shared by the server and the venue modules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

__all__ = ["BookingEffects", "WireRequest", "WireResponse", "json_response"]


@dataclass
class WireRequest:
    """One parsed request, as the venue modules see it.

    ``query`` and ``body`` are kept raw because signatures are computed over
    the exact bytes the client sent; re-encoding parsed params would reorder
    them and break verification.
    """

    method: str
    path: str
    query: str
    body: str
    headers: dict[str, str]
    recv_wall: float
    recv_mono: float
    params: dict = field(default_factory=dict)
    venue: str | None = None
    operation: str = "other"
    account: str | None = None
    symbol: str | None = None
    client_order_id: str | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class BookingEffects:
    """Fault effects that change how an order is booked, not the HTTP exchange."""

    partial_fraction: float | None = None
    fill_after_lookups: int | None = None
    invisible_ms: float = 0.0
    fault_names: list[str] = field(default_factory=list)


@dataclass
class WireResponse:
    """A response plus what the request log should say about it."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    code: int | None = None
    outcome: str = "ok"
    order_id: str | None = None
    booked: bool = False


def json_response(
    status: int,
    obj: object,
    *,
    code: int | None = 0,
    outcome: str = "ok",
    headers: dict[str, str] | None = None,
    order_id: str | None = None,
    booked: bool = False,
) -> WireResponse:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return WireResponse(
        status=status,
        body=body,
        headers=dict(headers or {}),
        code=code,
        outcome=outcome,
        order_id=order_id,
        booked=booked,
    )
