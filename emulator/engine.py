"""Venue-neutral trading state of the emulator: accounts, orders, fills, positions.

The HTTP layer (``bybit.py``, ``binance.py``, ``bitget.py``, ``okx.py``)
translates wire requests into calls on :class:`Engine` and translates
:class:`Reject` kinds back into the venue's own error codes. Keeping the
matching and bookkeeping here means every venue shares one implementation of
"market orders fill at the current price", reduce-only, margin checks,
duplicate client ids, partial fills and eventual consistency, and tests can
assert on one ledger.

Position modes: an account is in one-way mode (one signed position per
symbol, ``Account.positions``) unless ``Account.hedge_mode`` is set, in which
case every linear order names the position it acts on (``position_side``
"long"/"short") and the long and short books are kept apart
(``Account.hedge_positions``). Quantities are always in the base coin; a venue
that counts in contracts (OKX) converts at its edge.

Internally statuses use Bybit's vocabulary (New, PartiallyFilled, Filled,
Cancelled, PartiallyFilledCanceled); the Binance layer maps them.

All amounts are :class:`~decimal.Decimal`. All public methods take the engine
lock, so HTTP handler threads may call them concurrently.

Every change of an order's state (booked, filled or partly filled, cancelled)
is reported to the observers registered with :meth:`Engine.add_observer` as an
:class:`OrderEvent`, synchronously and under the engine lock: that is what the
private WebSocket streams (:mod:`emulator.streams`) push.
"""

from __future__ import annotations

import copy
import itertools
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal

from .markets import Market, dec, default_markets

log = logging.getLogger(__name__)

__all__ = [
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "Account",
    "Engine",
    "Execution",
    "Order",
    "OrderEvent",
    "Position",
    "Reject",
]

# "Untriggered": a conditional (stop / take-profit / trailing) order waiting for its trigger.
OPEN_STATUSES = frozenset({"New", "PartiallyFilled", "Untriggered"})
FINAL_STATUSES = frozenset({"Filled", "Cancelled", "Rejected", "PartiallyFilledCanceled", "Deactivated"})

# Fee schedules of a regular (VIP 0) account.
FEES = {
    ("bybit", "linear"): (Decimal("0.00055"), Decimal("0.0002")),  # taker, maker
    ("bybit", "spot"): (Decimal("0.001"), Decimal("0.001")),
    ("binance", "linear"): (Decimal("0.0005"), Decimal("0.0002")),
    ("bitget", "linear"): (Decimal("0.0006"), Decimal("0.0002")),
    ("bitget", "spot"): (Decimal("0.001"), Decimal("0.001")),
    ("okx", "linear"): (Decimal("0.0005"), Decimal("0.0002")),
    ("okx", "spot"): (Decimal("0.001"), Decimal("0.0008")),
}

DEFAULT_LEVERAGE = Decimal(10)
BINANCE_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")

# Each venue's client order id rule: the pattern an id must match, and how long
# an id stays taken. "forever" (per category): Bybit never accepts a reused
# orderLinkId. "open": the id is refused only while an earlier order carrying
# it is still open (Binance; Bitget documents its clientOid idempotency as
# "only valid when orders are unfilled"; OKX's order lookup by clOrdId returns
# "the latest" of several orders, i.e. a clOrdId may be reused once the earlier
# order is done).
CLIENT_ID_RULES: dict[str, tuple[re.Pattern, str]] = {
    "bybit": (re.compile(r"^.{1,36}$"), "forever"),
    "binance": (BINANCE_CLIENT_ID_RE, "open_same_symbol"),
    "bitget": (re.compile(r"^[A-Za-z0-9_#-]{1,50}$"), "open"),
    "okx": (re.compile(r"^[A-Za-z0-9]{1,32}$"), "open"),
}


class Reject(Exception):
    """A business rejection; ``kind`` is venue-neutral, the venue maps it."""

    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind = kind
        self.message = message


def _now_ms() -> int:
    return int(time.time() * 1000)


def _floor_to(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


@dataclass
class Execution:
    """One fill (Bybit "execution", Binance "trade")."""

    exec_id: str
    order_id: str
    client_order_id: str
    symbol: str
    category: str
    side: str
    order_type: str
    order_price: Decimal | None
    order_qty: Decimal
    leaves_qty: Decimal
    price: Decimal
    qty: Decimal
    value: Decimal
    fee: Decimal
    fee_rate: Decimal
    fee_coin: str
    is_maker: bool
    closed_size: Decimal
    time_ms: int
    seq: int
    # The order as this fill left it (what a stream push of this fill shows).
    order_status: str = ""
    realised_pnl: Decimal = Decimal(0)
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)


@dataclass
class Order:
    """A booked order. ``qty`` is in base units unless ``quote_qty`` is set."""

    venue: str
    account: str
    order_id: str
    client_order_id: str
    symbol: str
    category: str
    side: str  # "Buy" | "Sell"
    order_type: str  # "Market" | "Limit"
    qty: Decimal
    price: Decimal | None
    time_in_force: str
    reduce_only: bool
    market_unit: str = ""  # spot only: "baseCoin" | "quoteCoin" | ""
    # Hedge mode: the position the order acts on ("long" | "short"); "" in one-way mode.
    position_side: str = ""
    margin_mode: str = ""  # as the venue was told ("cross" | "isolated"), for display
    quote_qty: Decimal | None = None  # spot market orders sized in quote
    status: str = "New"
    cum_qty: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    fee_coin: str = ""
    created_ms: int = 0
    updated_ms: int = 0
    last_price_on_created: Decimal = Decimal(0)
    booked_wall: float = 0.0
    booked_mono: float = 0.0
    # Eventual consistency: lookups do not see the order before this instant.
    visible_at_mono: float = 0.0
    # partial_fill fault: quantity held back until fill_rest / N lookups.
    pending_qty: Decimal = Decimal(0)
    fill_after_lookups: int | None = None
    lookups: int = 0
    faults: list[str] = field(default_factory=list)
    # Conditional orders (see Engine.place_conditional): at market once the last price
    # crosses ``trigger_price`` in ``trigger_direction`` ("rise" | "fall"), or, trailing,
    # retraces from the best price since placement by ``trail_rate`` (a fraction) or
    # ``trail_distance``.
    conditional: bool = False
    stop_kind: str = ""  # "StopLoss" | "TakeProfit" | "TrailingStop" | "Stop"
    trigger_price: Decimal | None = None
    trigger_direction: str = ""
    trail_rate: Decimal | None = None
    trail_distance: Decimal | None = None
    trail_extreme: Decimal | None = None
    close_position: bool = False
    triggered_ms: int = 0

    @property
    def avg_price(self) -> Decimal:
        if self.cum_qty == 0:
            return Decimal(0)
        return self.cum_value / self.cum_qty

    @property
    def leaves_qty(self) -> Decimal:
        if self.status in FINAL_STATUSES:
            return Decimal(0)
        if self.quote_qty is not None:
            return Decimal(0) if self.status == "Filled" else self.pending_qty
        return self.qty - self.cum_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def trail_level(self) -> Decimal | None:
        """A trailing order's current trigger: the best price since placement, less the trail."""
        if self.trail_extreme is None:
            return None
        gap = self.trail_extreme * self.trail_rate if self.trail_rate is not None else (self.trail_distance or 0)
        return self.trail_extreme - gap if self.side == "Sell" else self.trail_extreme + gap

    def visible(self, now_mono: float | None = None) -> bool:
        now_mono = time.monotonic() if now_mono is None else now_mono
        return now_mono >= self.visible_at_mono

    def as_dict(self) -> dict:
        """A JSON-friendly snapshot (Decimals as strings)."""
        out = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, Decimal) else value
        out["avg_price"] = str(self.avg_price)
        out["leaves_qty"] = str(self.leaves_qty)
        return out


@dataclass
class Position:
    """A position; ``size`` is signed (negative = short). In hedge mode the long
    book is always >= 0 and the short book always <= 0."""

    symbol: str
    size: Decimal = Decimal(0)
    entry_price: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    cum_realised_pnl: Decimal = Decimal(0)
    created_ms: int = 0
    updated_ms: int = 0


@dataclass
class OrderEvent:
    """One change of an order's state, handed to the engine's observers.

    ``kind`` is ``"placed"`` (booked; ``executions`` holds the fills it took at
    once, if any), ``"fill"`` (a later fill: a resting order crossed by the
    price, or the rest of a partial fill) or ``"cancelled"``. Observers run
    under the engine lock, so ``order`` and ``account`` are consistent while
    they look; they must not block and must copy what they keep.
    """

    kind: str
    account: Account
    order: Order
    executions: list[Execution]


@dataclass
class Account:
    """State of one API key on one venue."""

    venue: str
    key: str
    balances: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    leverage: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)
    by_client_id: dict[str, list[Order]] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    rate_limit_per_second: int | None = None
    create_times: deque = field(default_factory=deque)
    rate_limit_violations: list[dict] = field(default_factory=list)
    # Position mode of the linear account (Bitget posMode, OKX posMode).
    hedge_mode: bool = False
    hedge_positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    # Per-symbol margin mode the venue reports ("cross" | "isolated").
    margin_modes: dict[str, str] = field(default_factory=dict)
    # Venue-specific account settings (e.g. OKX "acct_lv").
    config: dict[str, str] = field(default_factory=dict)

    def leverage_for(self, symbol: str) -> Decimal:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def hedge_position(self, symbol: str, side: str) -> Position:
        pos = self.hedge_positions.get((symbol, side))
        if pos is None:
            pos = Position(symbol=symbol)
            self.hedge_positions[(symbol, side)] = pos
        return pos

    def all_positions(self) -> list[Position]:
        """Every position book, one-way and hedge."""
        return list(self.positions.values()) + list(self.hedge_positions.values())

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = Position(symbol=symbol)
            self.positions[symbol] = pos
        return pos


class Engine:
    """Markets, prices and every account's books, behind one lock."""

    def __init__(
        self,
        markets: list[Market] | None = None,
        initial_balances: dict[str, object] | None = None,
        realtime_by_id_any_status: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        # Kept pristine so that reset() restores prices and instruments.
        self._initial_markets = copy.deepcopy(list(markets) if markets is not None else default_markets())
        self.markets: dict[str, Market] = {}
        for market in copy.deepcopy(self._initial_markets):
            self.markets[market.symbol] = market
        self.initial_balances = {coin: dec(v) for coin, v in (initial_balances or {"USDT": 100000}).items()}
        self.realtime_by_id_any_status = realtime_by_id_any_status
        self.clock_offset_ms = 0
        self.accounts: dict[tuple[str, str], Account] = {}
        self.ledger: list[Order] = []
        # Numeric order ids where the venue uses them (Bybit's are UUIDs).
        self._numeric_ids = {
            "binance": itertools.count(8_389_765_000_000_000),
            "bitget": itertools.count(1_311_488_897_767_604_224),
            "okx": itertools.count(2_112_269_865_356_374_016),
        }
        self._exec_seq = itertools.count(1)
        self._observers: list[Callable[[OrderEvent], None]] = []

    # -------------------------------------------------------------- observers
    def add_observer(self, observer: Callable[[OrderEvent], None]) -> None:
        """Call ``observer(event)`` on every order state change (under the lock)."""
        with self.lock:
            self._observers.append(observer)

    def remove_observer(self, observer: Callable[[OrderEvent], None]) -> None:
        with self.lock:
            if observer in self._observers:
                self._observers.remove(observer)

    def _emit(self, kind: str, acct: Account, order: Order, executions: list[Execution]) -> None:
        for observer in self._observers:
            try:
                observer(OrderEvent(kind, acct, order, executions))
            except Exception:
                # A stream bug must never break the REST answer that caused it.
                log.exception("emulator: order observer failed on %s %s", kind, order.order_id)

    # ------------------------------------------------------------------ setup
    def now_ms(self) -> int:
        return _now_ms() + self.clock_offset_ms

    def account(self, venue: str, key: str) -> Account:
        with self.lock:
            acct = self.accounts.get((venue, key))
            if acct is None:
                acct = Account(venue=venue, key=key, balances=dict(self.initial_balances))
                self.accounts[(venue, key)] = acct
            return acct

    def reset(self) -> None:
        """Back to the initial markets/prices, with no accounts or orders."""
        with self.lock:
            self.accounts.clear()
            self.ledger.clear()
            self.clock_offset_ms = 0
            self.markets = {m.symbol: m for m in copy.deepcopy(self._initial_markets)}

    def market(self, symbol: str) -> Market:
        market = self.markets.get(normalize_symbol(symbol))
        if market is None:
            raise Reject("unknown_symbol", f"symbol {symbol} not supported")
        return market

    def price(self, symbol: str) -> Decimal:
        return self.market(symbol).price

    def add_market(self, market: Market) -> None:
        with self.lock:
            self.markets[market.symbol] = market

    def set_price(self, symbol: str, price: object) -> list[Order]:
        """Move the price; resting limit orders that become marketable fill."""
        with self.lock:
            market = self.market(symbol)
            market.price = dec(price)
            filled = []
            for order in list(self.ledger):
                if order.symbol != market.symbol or not order.is_open:
                    continue
                if order.order_type != "Limit" or order.pending_qty > 0:
                    continue
                crosses = (order.side == "Buy" and order.price >= market.price) or (
                    order.side == "Sell" and order.price <= market.price
                )
                if crosses:
                    acct = self.accounts[(order.venue, order.account)]
                    # A resting order fills at its own limit price, as maker.
                    execution = self._fill(acct, order, order.leaves_qty, order.price, True)
                    filled.append(order)
                    if execution is not None:
                        self._emit("fill", acct, order, [execution])
            filled += self._check_triggers(market)
            return filled

    # ---------------------------------------------------------- conditional
    def place_conditional(
        self,
        acct: Account,
        *,
        symbol: str,
        side: str,
        qty: Decimal | None,
        client_order_id: str,
        stop_kind: str,
        trigger_price: Decimal | None = None,
        trigger_direction: str = "",
        trail_rate: Decimal | None = None,
        trail_distance: Decimal | None = None,
        reduce_only: bool = True,
        close_position: bool = False,
    ) -> Order:
        """Book a linear conditional market order (stop-loss, take-profit, trailing stop),
        validated as the venues do: side, trigger on the right side of the last price for
        its direction (else it would trigger at once), the price grid, reduce-only against
        the position it must reduce, and the quantity filters."""
        with self.lock:
            market = self.market(symbol)
            if side not in ("Buy", "Sell"):
                raise Reject("invalid_param", f"side {side!r} invalid")
            self._check_client_id(acct, "linear", market.symbol, client_order_id)
            pos = acct.positions.get(market.symbol)
            size = pos.size if pos else Decimal(0)
            if reduce_only or close_position:
                if not ((size > 0 and side == "Sell") or (size < 0 and side == "Buy")):
                    raise Reject("reduce_only", "reduce-only conditional order would not reduce the position")
            if close_position:
                qty = abs(size)
            elif qty is None or qty <= 0:
                raise Reject("invalid_param", "qty must be positive")
            elif qty % market.qty_step != 0:
                raise Reject("invalid_qty", f"qty not a multiple of {market.qty_step}")
            elif qty < market.min_qty:
                raise Reject("qty_too_small", f"qty below minimum {market.min_qty}")
            elif qty > market.max_qty:
                raise Reject("qty_too_large", f"qty above maximum {market.max_qty}")
            now_price = market.price
            if trigger_price is not None:
                if trigger_price <= 0 or trigger_price % market.tick != 0:
                    raise Reject("invalid_price", f"trigger price not a multiple of {market.tick}")
                if trigger_direction == "rise" and trigger_price <= now_price:
                    raise Reject(
                        "trigger_rise", f"expect Rising, but trigger_price[{trigger_price}] <= current[{now_price}]"
                    )
                if trigger_direction == "fall" and trigger_price >= now_price:
                    raise Reject(
                        "trigger_fall", f"expect Falling, but trigger_price[{trigger_price}] >= current[{now_price}]"
                    )
                if trigger_direction not in ("rise", "fall"):
                    raise Reject("invalid_param", "triggerDirection invalid")
            elif trail_rate is None and not trail_distance:
                raise Reject("invalid_param", "a conditional order needs a trigger price or a trail")
            now_ms = self.now_ms()
            mono = time.monotonic()
            order = Order(
                venue=acct.venue,
                account=acct.key,
                order_id=(
                    str(next(self._numeric_ids[acct.venue])) if acct.venue in self._numeric_ids else str(uuid.uuid4())
                ),
                client_order_id=client_order_id,
                symbol=market.symbol,
                category="linear",
                side=side,
                order_type="Market",
                qty=qty,
                price=None,
                time_in_force="GTC",
                reduce_only=bool(reduce_only or close_position),
                status="Untriggered",
                created_ms=now_ms,
                updated_ms=now_ms,
                last_price_on_created=now_price,
                booked_wall=time.time(),
                booked_mono=mono,
                visible_at_mono=mono,
                conditional=True,
                stop_kind=stop_kind,
                trigger_price=trigger_price,
                trigger_direction=trigger_direction,
                trail_rate=trail_rate,
                trail_distance=trail_distance,
                trail_extreme=now_price if trigger_price is None else None,
                close_position=close_position,
            )
            acct.orders[order.order_id] = order
            if client_order_id:
                acct.by_client_id.setdefault(client_order_id, []).append(order)
            self.ledger.append(order)
            self._emit("placed", acct, order, [])
            return order

    def _check_triggers(self, market: Market) -> list[Order]:
        """Fire the conditional orders of ``market`` its new price crosses (trailing ones
        follow the price first). A fired order closes at market, trimmed to the position;
        with nothing left to reduce it is deactivated, as the venues do."""
        fired = []
        price = market.price
        for order in list(self.ledger):
            if not order.conditional or order.status != "Untriggered" or order.symbol != market.symbol:
                continue
            if order.trigger_price is None:
                better = price > order.trail_extreme if order.side == "Sell" else price < order.trail_extreme
                if better:
                    order.trail_extreme = price
                level = order.trail_level
                crossed = price <= level if order.side == "Sell" else price >= level
            elif order.trigger_direction == "rise":
                crossed = price >= order.trigger_price
            else:
                crossed = price <= order.trigger_price
            if not crossed:
                continue
            acct = self.accounts[(order.venue, order.account)]
            order.triggered_ms = self.now_ms()
            pos = acct.positions.get(order.symbol)
            size = pos.size if pos else Decimal(0)
            reducible = (size > 0 and order.side == "Sell") or (size < 0 and order.side == "Buy")
            if not reducible:
                order.status = "Deactivated"
                order.updated_ms = order.triggered_ms
                self._emit("cancelled", acct, order, [])
                continue
            order.qty = abs(size) if order.close_position else min(order.qty, abs(size))
            order.status = "New"
            execution = self._fill(acct, order, order.qty, price, False)
            fired.append(order)
            if execution is not None:
                self._emit("fill", acct, order, [execution])
        return fired

    # ------------------------------------------------------------ rate limit
    def check_rate_limit(self, acct: Account, endpoint: str) -> None:
        """Rolling one-second window of *accepted* order creates per account."""
        with self.lock:
            limit = acct.rate_limit_per_second
            if limit is None:
                return
            now = time.monotonic()
            window = acct.create_times
            while window and now - window[0] >= 1.0:
                window.popleft()
            if len(window) >= limit:
                acct.rate_limit_violations.append(
                    {
                        "venue": acct.venue,
                        "account": acct.key,
                        "endpoint": endpoint,
                        "wall": time.time(),
                        "in_window": len(window),
                        "limit": limit,
                    }
                )
                raise Reject("rate_limited", "too many order creates")
            window.append(now)

    # --------------------------------------------------------------- margins
    def unrealised(self, acct: Account, symbol: str) -> Decimal:
        total = Decimal(0)
        pools = [acct.positions.get(symbol)] + [acct.hedge_positions.get((symbol, s)) for s in ("long", "short")]
        for pos in pools:
            if pos is not None and pos.size != 0:
                total += pos.size * (self.markets[symbol].price - pos.entry_price)
        return total

    def position_im(self, acct: Account) -> Decimal:
        total = Decimal(0)
        for pos in acct.all_positions():
            if pos.size != 0:
                total += abs(pos.size) * pos.entry_price / acct.leverage_for(pos.symbol)
        return total

    def order_im(self, acct: Account) -> Decimal:
        total = Decimal(0)
        for order in acct.orders.values():
            if order.category == "linear" and order.is_open and not order.reduce_only:
                ref = order.price or self.markets[order.symbol].price
                total += order.leaves_qty * ref / acct.leverage_for(order.symbol)
        return total

    def spot_locked(self, acct: Account) -> dict[str, Decimal]:
        locked: dict[str, Decimal] = {}
        for order in acct.orders.values():
            if order.category != "spot" or not order.is_open:
                continue
            market = self.markets[order.symbol]
            if order.side == "Buy":
                ref = order.price or market.price
                coin, amount = market.quote, order.leaves_qty * ref
            else:
                coin, amount = market.base, order.leaves_qty
            locked[coin] = locked.get(coin, Decimal(0)) + amount
        return locked

    def total_unrealised(self, acct: Account) -> Decimal:
        symbols = set(acct.positions) | {sym for sym, _ in acct.hedge_positions}
        return sum((self.unrealised(acct, s) for s in symbols), start=Decimal(0))

    def available(self, acct: Account, coin: str = "USDT") -> Decimal:
        """Free margin (USDT) or free spot balance (other coins)."""
        wallet = acct.balances.get(coin, Decimal(0))
        locked = self.spot_locked(acct).get(coin, Decimal(0))
        if coin != "USDT":
            return wallet - locked
        upnl = self.total_unrealised(acct)
        # Unrealised profit is not spendable; unrealised loss is.
        return wallet + min(upnl, Decimal(0)) - self.position_im(acct) - self.order_im(acct) - locked

    # ---------------------------------------------------------------- orders
    def place_order(
        self,
        acct: Account,
        *,
        category: str,
        symbol: str,
        side: str,
        order_type: str,
        qty: Decimal,
        price: Decimal | None = None,
        client_order_id: str = "",
        reduce_only: bool = False,
        time_in_force: str = "",
        market_unit: str = "",
        position_side: str = "",
        margin_mode: str = "",
        lot: tuple[Decimal, Decimal, Decimal] | None = None,
        min_notional: Decimal | None = None,
        partial_fraction: float | None = None,
        fill_after_lookups: int | None = None,
        invisible_ms: float = 0,
        faults: list[str] | None = None,
    ) -> Order:
        """Book (and, when marketable, fill) one order.

        ``position_side`` ("long"/"short") is required for linear orders of an
        account in hedge mode and refused otherwise; there ``reduce_only``
        means "close that position". ``lot`` = (step, min, max) in base units
        and ``min_notional`` replace the market's quantity and value filters
        for venues whose rules differ from the shared row (e.g. OKX's
        ctVal x lotSz, and no minimum value)."""
        with self.lock:
            return self._place(
                acct,
                category=category,
                symbol=symbol,
                side=side,
                order_type=order_type,
                qty=qty,
                price=price,
                client_order_id=client_order_id,
                reduce_only=reduce_only,
                time_in_force=time_in_force,
                market_unit=market_unit,
                position_side=position_side,
                margin_mode=margin_mode,
                lot=lot,
                min_notional=min_notional,
                partial_fraction=partial_fraction,
                fill_after_lookups=fill_after_lookups,
                invisible_ms=invisible_ms,
                faults=faults or [],
            )

    def _place(self, acct: Account, **kw) -> Order:
        category, side, order_type = kw["category"], kw["side"], kw["order_type"]
        qty, price = kw["qty"], kw["price"]
        cid = kw["client_order_id"] or ""
        market = self.market(kw["symbol"])
        if category == "spot" and not market.spot:
            raise Reject("unknown_symbol", f"no spot pair for {market.symbol}")
        if category not in ("spot", "linear"):
            raise Reject("unknown_symbol", f"category {category} not supported")
        if side not in ("Buy", "Sell"):
            raise Reject("invalid_param", f"side {side!r} invalid")
        if order_type not in ("Market", "Limit"):
            raise Reject("invalid_param", f"orderType {order_type!r} invalid")
        self._check_client_id(acct, category, market.symbol, cid)
        position_side = kw.get("position_side") or ""
        if category == "linear" and acct.hedge_mode and position_side not in ("long", "short"):
            raise Reject("position_mode", "the account is in hedge mode: the order must name long or short")
        if position_side and (category != "linear" or not acct.hedge_mode):
            raise Reject("position_mode", "the account is in one-way mode: the order must not name a position side")
        if qty is None or qty <= 0:
            raise Reject("invalid_param", "qty must be positive")
        if order_type == "Limit":
            if price is None or price <= 0:
                raise Reject("invalid_param", "price required for limit orders")
            tick = market.spot_tick if category == "spot" else market.tick
            if price % tick != 0:
                raise Reject("invalid_price", f"price not a multiple of {tick}")
        else:
            price = None

        now_price = market.price
        quote_sized = (
            category == "spot"
            and order_type == "Market"
            and (kw["market_unit"] == "quoteCoin" or (kw["market_unit"] == "" and side == "Buy"))
        )
        quote_qty = None
        if quote_sized:
            # Spot market buy without marketUnit=baseCoin: qty is quote to spend.
            quote_qty = qty
            min_amt = kw["min_notional"] if kw.get("min_notional") is not None else market.spot_min_amt
            if quote_qty < min_amt:
                raise Reject("min_notional", "order value below minimum")
            base_qty = _floor_to(quote_qty / now_price, market.spot_base_precision)
            if base_qty <= 0:
                raise Reject("qty_too_small", "order quantity below minimum")
        else:
            base_qty = qty
            step = market.spot_base_precision if category == "spot" else market.qty_step
            min_qty = market.spot_min_qty if category == "spot" else market.min_qty
            max_qty = market.spot_max_qty if category == "spot" else market.max_qty
            if kw.get("lot"):
                step, min_qty, max_qty = kw["lot"]
            if base_qty % step != 0:
                raise Reject("invalid_qty", f"qty not a multiple of {step}")
            if base_qty < min_qty:
                raise Reject("qty_too_small", f"qty below minimum {min_qty}")
            if base_qty > max_qty:
                raise Reject("qty_too_large", f"qty above maximum {max_qty}")

        ref_price = price if price is not None else now_price
        reduce_only = bool(kw["reduce_only"]) and category == "linear"
        if reduce_only:
            if position_side:
                pos = acct.hedge_positions.get((market.symbol, position_side))
            else:
                pos = acct.positions.get(market.symbol)
            size = pos.size if pos else Decimal(0)
            reduces = (size > 0 and side == "Sell") or (size < 0 and side == "Buy")
            if not reduces:
                raise Reject("reduce_only", "reduce-only order would not reduce")
            # The venue trims a reduce-only order to the position size.
            base_qty = min(base_qty, abs(size))
        elif position_side and (side == "Buy") != (position_side == "long"):
            # Hedge mode: a plain order opens the side it names (buy long, sell short).
            raise Reject("position_mode", f"a {side.lower()} cannot open a {position_side} position")
        if not reduce_only:
            if category == "spot":
                min_amt = market.spot_min_amt
            elif acct.venue == "binance":
                min_amt = market.binance_min_notional
            else:
                min_amt = market.min_notional
            if kw.get("min_notional") is not None:
                min_amt = kw["min_notional"]
            if quote_qty is None and base_qty * ref_price < min_amt:
                raise Reject("min_notional", f"order value below {min_amt}")
            self._check_funds(acct, market, category, side, base_qty, ref_price, hedged=bool(position_side))

        marketable = order_type == "Market" or (
            (side == "Buy" and price >= now_price) or (side == "Sell" and price <= now_price)
        )
        post_only_cross = kw["time_in_force"] == "PostOnly" and marketable and order_type == "Limit"
        if post_only_cross and acct.venue == "binance":
            # Binance rejects a GTX order that would take (-5022).
            raise Reject("post_only", "post-only order would take liquidity")

        now_ms = self.now_ms()
        mono = time.monotonic()
        order = Order(
            venue=acct.venue,
            account=acct.key,
            order_id=(
                str(next(self._numeric_ids[acct.venue])) if acct.venue in self._numeric_ids else str(uuid.uuid4())
            ),
            client_order_id=cid,
            symbol=market.symbol,
            category=category,
            side=side,
            order_type=order_type,
            qty=base_qty if quote_qty is None else quote_qty,
            price=price,
            time_in_force=kw["time_in_force"] or ("IOC" if order_type == "Market" else "GTC"),
            reduce_only=reduce_only,
            market_unit=kw["market_unit"] if category == "spot" else "",
            position_side=position_side,
            margin_mode=kw.get("margin_mode") or "",
            quote_qty=quote_qty,
            created_ms=now_ms,
            updated_ms=now_ms,
            last_price_on_created=now_price,
            booked_wall=time.time(),
            booked_mono=mono,
            visible_at_mono=mono + (kw["invisible_ms"] or 0) / 1000.0,
            fill_after_lookups=kw["fill_after_lookups"],
            faults=list(kw["faults"]),
        )
        acct.orders[order.order_id] = order
        if cid:
            acct.by_client_id.setdefault(cid, []).append(order)
        self.ledger.append(order)
        fills_before = len(acct.executions)

        if post_only_cross:
            # Bybit books a crossing PostOnly order and cancels it at once.
            order.status = "Cancelled"
        elif marketable:
            fill_qty = base_qty
            fraction = kw["partial_fraction"]
            if fraction is not None and 0 < fraction < 1:
                step = market.spot_base_precision if category == "spot" else market.qty_step
                fill_qty = max(step, _floor_to(base_qty * dec(fraction), step))
                fill_qty = min(base_qty, fill_qty)
            order.pending_qty = base_qty - fill_qty
            self._fill(acct, order, fill_qty, now_price, False)
        self._emit("placed", acct, order, acct.executions[fills_before:])
        return order

    def _check_client_id(self, acct: Account, category: str, symbol: str, cid: str) -> None:
        if not cid:
            return
        pattern, scope = CLIENT_ID_RULES[acct.venue]
        if not pattern.match(cid):
            raise Reject("invalid_client_id", "client order id is not valid")
        for prev in acct.by_client_id.get(cid, []):
            if scope == "forever" and prev.category == category:
                # Bybit: an orderLinkId can never be reused within a category.
                raise Reject("duplicate_client_id", "client order id is duplicate")
            if scope == "open_same_symbol" and prev.symbol == symbol and prev.is_open:
                raise Reject("duplicate_client_id", "client order id is duplicated")
            if scope == "open" and prev.category == category and prev.is_open:
                raise Reject("duplicate_client_id", "client order id is duplicated")

    def _check_funds(
        self,
        acct: Account,
        market: Market,
        category: str,
        side: str,
        qty: Decimal,
        ref_price: Decimal,
        *,
        hedged: bool = False,
    ) -> None:
        taker = FEES[(acct.venue, category)][0]
        if category == "spot":
            if side == "Buy":
                need, coin = qty * ref_price * (1 + taker), market.quote
            else:
                need, coin = qty, market.base
            if need > self.available(acct, coin):
                raise Reject("insufficient", f"insufficient {coin} balance")
            return
        pos = None if hedged else acct.positions.get(market.symbol)
        size = pos.size if pos else Decimal(0)
        closing = Decimal(0)
        if (size > 0 and side == "Sell") or (size < 0 and side == "Buy"):
            closing = min(qty, abs(size))
        opening = qty - closing
        if opening <= 0:
            return
        need = opening * ref_price / acct.leverage_for(market.symbol)
        need += qty * ref_price * taker
        if need > self.available(acct, "USDT"):
            raise Reject("insufficient", "available balance not enough")

    def _fill(self, acct: Account, order: Order, qty: Decimal, price: Decimal, is_maker: bool) -> Execution | None:
        if qty <= 0:
            return None
        market = self.markets[order.symbol]
        taker, maker = FEES[(acct.venue, order.category)]
        rate = maker if is_maker else taker
        value = qty * price
        closed = pnl = Decimal(0)
        if order.category == "spot":
            if order.side == "Buy":
                fee, fee_coin = qty * rate, market.base
                self._credit(acct, market.quote, -value)
                self._credit(acct, market.base, qty - fee)
            else:
                fee, fee_coin = value * rate, market.quote
                self._credit(acct, market.base, -qty)
                self._credit(acct, market.quote, value - fee)
        else:
            fee, fee_coin = value * rate, market.quote
            self._credit(acct, market.quote, -fee)
            closed, pnl = self._apply_position(acct, order.symbol, order.side, qty, price, order.position_side)
        now_ms = self.now_ms()
        order.cum_qty += qty
        order.cum_value += value
        order.cum_fee += fee
        order.fee_coin = fee_coin
        order.updated_ms = now_ms
        if order.quote_qty is not None:
            done = order.pending_qty <= 0
        else:
            done = order.cum_qty >= order.qty
        order.status = "Filled" if done else "PartiallyFilled"
        execution = Execution(
            exec_id=str(uuid.uuid4()),
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            category=order.category,
            side=order.side,
            order_type=order.order_type,
            order_price=order.price,
            order_qty=order.qty,
            leaves_qty=order.leaves_qty,
            price=price,
            qty=qty,
            value=value,
            fee=fee,
            fee_rate=rate,
            fee_coin=fee_coin,
            is_maker=is_maker,
            closed_size=closed,
            time_ms=now_ms,
            seq=next(self._exec_seq),
            order_status=order.status,
            realised_pnl=pnl,
            cum_qty=order.cum_qty,
            cum_value=order.cum_value,
            cum_fee=order.cum_fee,
        )
        acct.executions.append(execution)
        return execution

    @staticmethod
    def _credit(acct: Account, coin: str, amount: Decimal) -> None:
        acct.balances[coin] = acct.balances.get(coin, Decimal(0)) + amount

    def _apply_position(
        self, acct: Account, symbol: str, side: str, qty: Decimal, price: Decimal, position_side: str = ""
    ) -> tuple[Decimal, Decimal]:
        """Update the position the fill belongs to (the one-way position, or in hedge mode
        the long or short book the order named); returns the closed size and its realised P&L."""
        pos = acct.hedge_position(symbol, position_side) if position_side else acct.position(symbol)
        now_ms = self.now_ms()
        delta = qty if side == "Buy" else -qty
        closed = pnl = Decimal(0)
        if pos.size == 0 or (pos.size > 0) == (delta > 0):
            total = abs(pos.size) + qty
            pos.entry_price = (abs(pos.size) * pos.entry_price + qty * price) / total
            if pos.size == 0:
                pos.created_ms = now_ms
            pos.size += delta
        else:
            closed = min(qty, abs(pos.size))
            direction = Decimal(1) if pos.size > 0 else Decimal(-1)
            pnl = closed * (price - pos.entry_price) * direction
            pos.realised_pnl += pnl
            pos.cum_realised_pnl += pnl
            self._credit(acct, "USDT", pnl)
            remainder = qty - closed
            pos.size += delta
            if pos.size == 0:
                pos.entry_price = Decimal(0)
            elif remainder > 0:
                # Flipped through zero: the new position opens at this price.
                pos.entry_price = price
                pos.created_ms = now_ms
        pos.updated_ms = now_ms
        return closed, pnl

    def fill_rest(self, order: Order) -> Order:
        """Fill the quantity a partial_fill fault held back, at the current price."""
        with self.lock:
            if order.pending_qty > 0 and order.is_open:
                acct = self.accounts[(order.venue, order.account)]
                qty = order.pending_qty
                order.pending_qty = Decimal(0)
                execution = self._fill(acct, order, qty, self.markets[order.symbol].price, False)
                if execution is not None:
                    self._emit("fill", acct, order, [execution])
            return order

    def cancel(
        self,
        acct: Account,
        *,
        category: str | None,
        symbol: str | None,
        order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> Order:
        with self.lock:
            order = self.lookup_one(
                acct,
                category=category,
                symbol=symbol,
                order_id=order_id,
                client_order_id=client_order_id,
                count_lookup=False,
            )
            if order is None or not order.is_open:
                raise Reject("not_found", "order not exists or too late to cancel")
            if order.cum_qty > 0 and order.category == "spot":
                order.status = "PartiallyFilledCanceled"
            elif order.status == "Untriggered":
                order.status = "Deactivated"  # Bybit's word for a cancelled conditional order
            else:
                order.status = "Cancelled"
            order.pending_qty = Decimal(0)
            order.updated_ms = self.now_ms()
            self._emit("cancelled", acct, order, [])
            return order

    # --------------------------------------------------------------- lookups
    def lookup_one(
        self,
        acct: Account,
        *,
        category: str | None,
        symbol: str | None,
        order_id: str | None = None,
        client_order_id: str | None = None,
        count_lookup: bool = True,
    ) -> Order | None:
        """Find one visible order by id (priority) or by client id (latest)."""
        with self.lock:
            now = time.monotonic()
            if order_id is not None:
                candidates = [acct.orders[order_id]] if order_id in acct.orders else []
            elif client_order_id:
                candidates = list(reversed(acct.by_client_id.get(client_order_id, [])))
            else:
                return None
            for order in candidates:
                if category and order.category != category:
                    continue
                if symbol and order.symbol != symbol:
                    continue
                if not order.visible(now):
                    continue
                if count_lookup:
                    self._note_lookup(order)
                return order
            return None

    def query(
        self,
        acct: Account,
        *,
        category: str | None = None,
        symbol: str | None = None,
        order_id: str | None = None,
        client_order_id: str | None = None,
        statuses: set[str] | frozenset[str] | None = None,
        base_coin: str | None = None,
        settle_coin: str | None = None,
    ) -> list[Order]:
        """Visible orders matching the filters, newest first."""
        with self.lock:
            now = time.monotonic()
            if order_id is not None:
                pool = [acct.orders[order_id]] if order_id in acct.orders else []
            elif client_order_id:
                pool = list(acct.by_client_id.get(client_order_id, []))
            else:
                pool = list(acct.orders.values())
            out = []
            for order in pool:
                if category and order.category != category:
                    continue
                if symbol and order.symbol != symbol:
                    continue
                market = self.markets[order.symbol]
                if base_coin and market.base != base_coin:
                    continue
                if settle_coin and market.quote != settle_coin:
                    continue
                if not order.visible(now):
                    continue
                self._note_lookup(order)
                if statuses is not None and order.status not in statuses:
                    continue
                out.append(order)
            out.sort(key=lambda o: (o.created_ms, o.booked_mono), reverse=True)
            return out

    def _note_lookup(self, order: Order) -> None:
        # partial_fill with fill_after_lookups=N: the first N lookups see the
        # partial state, the (N+1)-th sees the order filled.
        if order.pending_qty > 0 and order.fill_after_lookups is not None:
            order.lookups += 1
            if order.lookups > order.fill_after_lookups:
                self.fill_rest(order)

    def executions(
        self,
        acct: Account,
        *,
        category: str | None = None,
        symbol: str | None = None,
        order_id: str | None = None,
        client_order_id: str | None = None,
    ) -> list[Execution]:
        with self.lock:
            now = time.monotonic()
            if order_id is not None or client_order_id:
                orders = self.query(
                    acct,
                    category=category,
                    symbol=symbol,
                    order_id=order_id,
                    client_order_id=client_order_id,
                )
                ids = {o.order_id for o in orders}
            else:
                ids = None
            out = []
            for ex in acct.executions:
                if category and ex.category != category:
                    continue
                if symbol and ex.symbol != symbol:
                    continue
                if ids is not None and ex.order_id not in ids:
                    continue
                order = acct.orders.get(ex.order_id)
                if order is not None and not order.visible(now):
                    continue
                out.append(ex)
            out.sort(key=lambda e: e.seq, reverse=True)
            return out

    def find_any(self, order_id: str | None = None, client_order_id: str | None = None) -> list[Order]:
        """Ledger search across accounts (test helpers; ignores visibility)."""
        with self.lock:
            return [
                o
                for o in self.ledger
                if (order_id is None or o.order_id == order_id)
                and (client_order_id is None or o.client_order_id == client_order_id)
            ]

    # ---------------------------------------------------------- position mode
    def set_position_mode(self, acct: Account, hedge: bool) -> bool:
        """Switch one-way/hedge. Like the venues, refused while the account holds
        a position or an open linear order. Returns False when unchanged."""
        with self.lock:
            if acct.hedge_mode == hedge:
                return False
            busy = any(p.size != 0 for p in acct.all_positions()) or any(
                o.is_open and o.category == "linear" for o in acct.orders.values()
            )
            if busy:
                raise Reject("position_mode_locked", "positions or open orders exist")
            acct.hedge_mode = hedge
            return True

    def set_margin_mode(self, acct: Account, symbol: str, mode: str) -> None:
        with self.lock:
            market = self.market(symbol)
            if mode not in ("cross", "isolated"):
                raise Reject("invalid_param", f"margin mode {mode!r} invalid")
            busy = any(p.size != 0 for p in acct.all_positions() if p.symbol == market.symbol)
            if busy and acct.margin_modes.get(market.symbol, "cross") != mode:
                raise Reject("position_mode_locked", "a position is open on this symbol")
            acct.margin_modes[market.symbol] = mode

    # --------------------------------------------------------------- leverage
    def set_leverage(self, acct: Account, symbol: str, leverage: Decimal) -> bool:
        """Returns False when unchanged (Bybit answers 110043 then)."""
        with self.lock:
            market = self.market(symbol)
            if leverage < 1 or leverage > market.max_leverage:
                raise Reject("invalid_leverage", f"leverage {leverage} out of range")
            if acct.leverage_for(market.symbol) == leverage:
                return False
            acct.leverage[market.symbol] = leverage
            return True


def normalize_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT', 'BTC/USDT', 'BTCUSDT', OKX's 'BTC-USDT' or 'BTC-USDT-SWAP' -> 'BTCUSDT'."""
    base = symbol.split(":", 1)[0].upper()
    if base.endswith("-SWAP"):
        base = base[: -len("-SWAP")]
    return base.replace("/", "").replace("-", "")
