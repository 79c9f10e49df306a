"""The one gateway interface every venue (and the paper exchange) implements, plus the
TradingView ticker → ccxt symbol rules."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any


@dataclass(frozen=True)
class MarketInfo:
    symbol: str  # ccxt unified, e.g. BTC/USDT:USDT
    base: str
    quote: str
    kind: str  # "spot" or "linear"
    amount_step: Decimal
    price_step: Decimal
    min_qty: Decimal
    min_notional: Decimal = Decimal("0")
    max_leverage: int | None = None

    def round_qty(self, qty: Decimal) -> Decimal:
        if self.amount_step <= 0:
            return qty
        return (qty / self.amount_step).to_integral_value(rounding=ROUND_DOWN) * self.amount_step

    def round_price(self, price: Decimal, *, up: bool) -> Decimal:
        if self.price_step <= 0:
            return price
        from decimal import ROUND_CEILING, ROUND_FLOOR

        steps = (price / self.price_step).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR)
        return steps * self.price_step


@dataclass
class OrderState:
    """What the venue says about one order."""

    client_order_id: str
    exchange_order_id: str
    status: str  # open / partially_filled / filled / cancelled / rejected
    filled: Decimal = Decimal("0")
    average: Decimal | None = None
    fee: Decimal = Decimal("0")
    fee_currency: str = ""
    amount: Decimal | None = None
    reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        return self.status in ("filled", "cancelled", "rejected")


@dataclass
class PositionInfo:
    symbol: str
    qty: Decimal  # signed: + long, - short
    avg_price: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    mark_price: Decimal | None = None


class Gateway(ABC):
    """One exchange account. Implementations must be safe to call from several threads."""

    #: Does the venue refuse a second order with the same client id forever (not only
    #: while the first is open)? Decides whether a proven-unseen order may be resent.
    client_id_always_unique: bool = True
    name: str = ""

    @abstractmethod
    def market(self, symbol: str) -> MarketInfo: ...

    @abstractmethod
    def create_order(
        self,
        *,
        symbol: str,
        side: str,
        order_type: str,
        qty: Decimal,
        price: Decimal | None,
        reduce_only: bool,
        client_order_id: str,
        signal_price: Decimal | None = None,
        before_send=None,
    ) -> OrderState:
        """Place one order. `before_send()` runs immediately before the request leaves (after
        it is built, before it is signed), and may raise SendAborted to stop it."""

    @abstractmethod
    def find_order(self, *, symbol: str, client_order_id: str, exchange_order_id: str = "") -> OrderState | None:
        """The order's state, or None when the venue says it does not have it."""

    @abstractmethod
    def cancel_order(self, *, symbol: str, client_order_id: str, exchange_order_id: str = "") -> OrderState | None: ...

    @abstractmethod
    def fetch_positions(self, symbols: list[str] | None = None) -> list[PositionInfo]: ...

    @abstractmethod
    def fetch_equity(self, currency: str = "USDT") -> Decimal: ...

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderState]:
        return []

    # --- protective orders (docs/execution.md, "Protective orders") ------------------------

    def create_protective(
        self,
        *,
        symbol: str,
        kind: str,
        side: str,
        qty: Decimal,
        trigger_price: Decimal | None,
        trail_percent: Decimal | None = None,
        trail_distance: Decimal | None = None,
        client_order_id: str,
        before_send=None,
    ) -> OrderState:
        """Place a reduce-only trigger order closing `qty` of a position when the price
        crosses `trigger_price` (kind stop_loss / take_profit) or retraces by the trail
        (trailing_stop), at market. Same contract as create_order: `before_send()` right
        before the request leaves; ambiguous failures raise TemporaryError."""
        from .errors import Misconfigured

        raise Misconfigured(f"protective orders are not supported on {self.name or 'this venue'}")

    def find_protective(self, *, symbol: str, client_order_id: str, exchange_order_id: str = "") -> OrderState | None:
        """A protective order's state (open while it waits for its trigger; filled once it
        fired and closed the position), or None when the venue does not have it."""
        return self.find_order(symbol=symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id)

    def cancel_protective(self, *, symbol: str, client_order_id: str, exchange_order_id: str = "") -> OrderState | None:
        return self.cancel_order(symbol=symbol, client_order_id=client_order_id, exchange_order_id=exchange_order_id)

    def set_leverage(self, *, symbol: str, leverage: int) -> None:
        return None

    def account_setup_problems(self) -> list[str]:
        """What the venue account's own settings (position mode, margin or account mode) need
        changing for this gateway to trade as configured, in words for the operator; [] when
        they match. Costs one or two reads at the venue, so it belongs to "Test connection",
        not to the hot path."""
        return []

    def resolve_symbol(self, ticker: str, market_type: str, override: str = "") -> str:
        return override or tradingview_to_ccxt(ticker, market_type)


#: Each venue's client order id rule (pattern, where it is documented). Ours are `tv` + 6 hex
#: + base 36 + `l` + leg: letters and digits, at most 32 characters, valid on all of them.
CLIENT_ID_RULES: dict[str, tuple[re.Pattern, str]] = {
    "bybit": (re.compile(r"^[A-Za-z0-9_-]{1,36}$"), "orderLinkId: up to 36 characters"),
    "binanceusdm": (re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$"), "newClientOrderId: ^[.A-Z:/a-z0-9_-]{1,36}$"),
    "bitget": (
        re.compile(r"^[A-Za-z0-9_#-]{1,50}$"),
        "clientOid: letters, digits, '_', '-', '#'; up to 50 characters",
    ),
    "okx": (re.compile(r"^[A-Za-z0-9]{1,32}$"), "clOrdId: letters and digits only, up to 32 characters"),
}


def client_order_id_problem(exchange: str, client_order_id: str) -> str:
    """Why `client_order_id` would be refused by `exchange`, or "" when it is valid there."""
    rule = CLIENT_ID_RULES.get(exchange)
    if rule is None or rule[0].match(client_order_id):
        return ""
    return f"client order id {client_order_id!r} is not valid on {exchange} ({rule[1]})"


_QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD", "BTC", "ETH", "EUR")


def tradingview_to_ccxt(ticker: str, market_type: str) -> str:
    """`BTCUSDT.P` → `BTC/USDT:USDT`; `BTCUSDT` → spot `BTC/USDT` or the perp, per the
    account's market type; an exchange prefix (`BYBIT:`) is dropped."""
    ticker = ticker.upper().split(":")[-1].strip()
    perp = ticker.endswith(".P")
    core = ticker[:-2] if perp else ticker
    core = re.sub(r"PERP$", "", core)
    for quote in _QUOTES:
        if core.endswith(quote) and len(core) > len(quote):
            base = core[: -len(quote)]
            break
    else:
        raise ValueError(f"cannot tell the quote currency of ticker {ticker!r}; set a symbol override")
    if perp or market_type == "linear":
        settle = quote if quote != "USD" else base
        return f"{base}/{quote}:{settle}"
    return f"{base}/{quote}"
