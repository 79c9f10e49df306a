"""Turn a signal into order legs under its strategy's settings. Pure decisions: the inputs
(market rules, the strategy's current position, equity) are passed in."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .exchanges.base import MarketInfo

BPS = Decimal("10000")


class PlanError(Exception):
    """The signal cannot be executed as configured; the message says why, for a trader."""


class NothingToDo(Exception):
    """A valid signal that needs no order (e.g. close_long while flat)."""


@dataclass
class Leg:
    symbol: str
    side: str  # buy / sell
    qty: Decimal
    order_type: str  # market / limit
    limit_price: Decimal | None
    reduce_only: bool
    purpose: str  # open / close


def entry_size(*, strategy, signal_volume: Decimal, price: Decimal, equity: Decimal | None) -> Decimal:
    mode = strategy.sizing_mode
    if mode == "signal":
        return signal_volume
    value = Decimal(strategy.size_value or 0)
    if value <= 0:
        raise PlanError(f"sizing mode {mode} needs a size value greater than 0")
    if mode == "fixed_base":
        return value
    if mode == "fixed_quote":
        return value / price
    if mode == "percent_equity":
        if equity is None or equity <= 0:
            raise PlanError("percent-of-equity sizing needs a positive account equity")
        return equity * value / Decimal(100) / price
    raise PlanError(f"unknown sizing mode {mode}")


def _order_terms(strategy, market: MarketInfo, side: str, price: Decimal) -> tuple[str, Decimal | None]:
    kind = strategy.order_type
    if kind == "market":
        return "market", None
    if kind == "limit":
        offset = Decimal(strategy.limit_offset_bps or 0) / BPS
        raw = price * (1 - offset) if side == "buy" else price * (1 + offset)
        return "limit", market.round_price(raw, up=side == "sell")
    # Marketable limit: crosses the book now, but never fills worse than the cap.
    cap = Decimal(strategy.max_slippage_bps or 0) / BPS
    raw = price * (1 + cap) if side == "buy" else price * (1 - cap)
    return "limit", market.round_price(raw, up=side == "sell")


def _checked_qty(market: MarketInfo, qty: Decimal, price: Decimal, what: str) -> Decimal:
    rounded = market.round_qty(qty)
    if rounded <= 0 or rounded < market.min_qty:
        raise PlanError(
            f"{what} size {qty.normalize()} rounds to {rounded.normalize()}, below the market minimum "
            f"{market.min_qty.normalize()} for {market.symbol}"
        )
    if market.min_notional and rounded * price < market.min_notional:
        raise PlanError(
            f"{what} value {rounded * price:.2f} {market.quote} is below the market minimum "
            f"{market.min_notional.normalize()} {market.quote} for {market.symbol}"
        )
    return rounded


def plan_legs(
    *,
    action: str,
    strategy,
    market: MarketInfo,
    price: Decimal,
    volume: Decimal,
    position: Decimal,
    equity: Decimal | None = None,
    spot: bool = False,
    market_position: str = "",
    market_position_size: Decimal | None = None,
) -> list[Leg]:
    """Legs for one symbol. `position` is the strategy's current signed position.

    When the alert carries TradingView's `{{strategy.market_position}}` (and size), a buy or
    sell is read the way the Pine strategy meant it: a sell that leaves the strategy flat is
    an exit, not a short; a sell while it stays long is a partial exit; a reversal opens only
    the new position's size, not the contracts of the whole order (which include the close).
    """
    if action in ("close_long", "close_short", "close_all"):
        if action == "close_long" and position <= 0:
            raise NothingToDo("no long position to close")
        if action == "close_short" and position >= 0:
            raise NothingToDo("no short position to close")
        if position == 0:
            raise NothingToDo("no position to close")
        return [_close_leg(strategy, market, position, price)]

    side = "buy" if action == "buy" else "sell"
    if market_position == "flat":
        if position == 0:
            raise NothingToDo("the strategy is flat per TradingView and holds nothing here")
        return [_close_leg(strategy, market, position, price)]
    if market_position in ("long", "short"):
        target = 1 if market_position == "long" else -1
        if (1 if side == "buy" else -1) != target:
            # e.g. a sell while TradingView stays long: part of the position is taken off.
            held = position * target
            if held <= 0:
                raise NothingToDo(f"partial exit of a {market_position} position, but none is held")
            return [_close_leg(strategy, market, position, price, qty=min(volume, held))]
        if position * target < 0 and market_position_size is not None and strategy.sizing_mode == "signal":
            # A reversal: the order's contracts include the close; open only the new size.
            volume = market_position_size
    if spot and side == "sell":
        # A spot account cannot go short: a sell closes what is held, and nothing more.
        if position > 0:
            return [_close_leg(strategy, market, position, price)]
        raise NothingToDo("spot accounts cannot open a short; nothing is held to sell")
    opposite = (side == "buy" and position < 0) or (side == "sell" and position > 0)
    legs: list[Leg] = []
    if opposite:
        if strategy.on_opposite == "ignore":
            raise NothingToDo(f"{action} while {'short' if position < 0 else 'long'}: this strategy ignores it")
        legs.append(_close_leg(strategy, market, position, price))
        if strategy.on_opposite == "close_only":
            return legs
        position = Decimal("0")

    qty = entry_size(strategy=strategy, signal_volume=volume, price=price, equity=equity)
    if strategy.max_position is not None:
        room = Decimal(strategy.max_position) - abs(position)
        if room <= 0:
            if legs:
                return legs
            raise NothingToDo(f"maximum position {Decimal(strategy.max_position).normalize()} reached")
        qty = min(qty, room)
    qty = _checked_qty(market, qty, price, "order")
    order_type, limit_price = _order_terms(strategy, market, side, price)
    legs.append(
        Leg(
            symbol=market.symbol,
            side=side,
            qty=qty,
            order_type=order_type,
            limit_price=limit_price,
            reduce_only=False,
            purpose="open",
        )
    )
    return legs


def _close_leg(strategy, market: MarketInfo, position: Decimal, price: Decimal, qty: Decimal | None = None) -> Leg:
    side = "sell" if position > 0 else "buy"
    qty = market.round_qty(min(abs(position), qty) if qty is not None else abs(position))
    if qty <= 0:
        raise NothingToDo(f"position {position.normalize()} is below the market's lot size")
    order_type, limit_price = _order_terms(strategy, market, side, price)
    # Spot venues have no reduce-only flag; there a close is a plain sell of what is held.
    return Leg(
        symbol=market.symbol,
        side=side,
        qty=qty,
        order_type=order_type,
        limit_price=limit_price,
        reduce_only=market.kind != "spot",
        purpose="close",
    )
