"""Plan: turn a signal into order legs under its strategy's settings.

`plan_legs` is the pure decision for one market (inputs passed in: market rules, the
strategy's position, equity). `signal_plan` gathers those inputs for a signal — the market
of its ticker, or every market a close_all flattens — and is the one path both a real run
and "replay on paper" take, so what a replay shows is what a run would send.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.utils.http import int_to_base36

from execution.exchanges import Gateway, GatewayError
from execution.exchanges.base import MarketInfo, tradingview_to_ccxt
from execution.models import Order, Position
from strategies.models import TradingControl
from strategies.validation import protection_effective, protection_errors, protection_venue

from . import statements

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
    #: The reference price the leg was planned at (the alert's, or the market's last).
    price: Decimal = Decimal("0")


# --- client order ids ------------------------------------------------------------------------

_install_tag_cache: str | None = None


def _install_tag() -> str:
    """Six hex characters made when this database was created: two installations (or a
    database reset) sharing one exchange account never collide on client order ids."""
    global _install_tag_cache
    if _install_tag_cache is None:
        _install_tag_cache = TradingControl.current().install_id
    return _install_tag_cache


def client_order_id_for(*, signal_id: int, leg: int, subscription_id: int | None = None) -> str:
    """Deterministic: `tv` + install tag + signal id (base 36) + `l` + leg; for a fanned-out
    alert, the alert's signal id + `s` + subscription id (base 36) + `l` + leg. Letters and
    digits only, at most 32 characters: valid on Bybit, Binance, OKX and Bitget."""
    if subscription_id is not None:
        return f"tv{_install_tag()}{int_to_base36(signal_id)}s{int_to_base36(subscription_id)}l{leg}"
    return f"tv{_install_tag()}{int_to_base36(signal_id)}l{leg}"


# --- the decision for one market ---------------------------------------------------------------


def entry_size(*, strategy, signal_volume: Decimal, price: Decimal, equity: Decimal | None) -> Decimal:
    mode = strategy.sizing_mode
    if mode == "signal":
        # A subscription sized as a multiple of the alert's volume (strategies.subscriptions).
        multiplier = getattr(strategy, "size_multiplier", None)
        return signal_volume * Decimal(multiplier) if multiplier else signal_volume
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
    legs.append(Leg(market.symbol, side, qty, order_type, limit_price, False, "open", price))
    return legs


def _close_leg(strategy, market: MarketInfo, position: Decimal, price: Decimal, qty: Decimal | None = None) -> Leg:
    side = "sell" if position > 0 else "buy"
    qty = market.round_qty(min(abs(position), qty) if qty is not None else abs(position))
    if qty <= 0:
        raise NothingToDo(f"position {position.normalize()} is below the market's lot size")
    order_type, limit_price = _order_terms(strategy, market, side, price)
    # Spot venues have no reduce-only flag; there a close is a plain sell of what is held.
    return Leg(market.symbol, side, qty, order_type, limit_price, market.kind != "spot", "close", price)


# --- a signal's legs ----------------------------------------------------------------------------


def last_price(account, symbol: str) -> Decimal | None:
    """The last price we know for a market of the account: its last fill, else the
    position's entry."""
    last = (
        Order.objects.filter(account=account, symbol=symbol, avg_price__isnull=False)
        .order_by("-id")
        .values_list("avg_price", flat=True)
        .first()
    )
    if last is None:
        last = Position.objects.filter(account=account, symbol=symbol).values_list("avg_price", flat=True).first()
    return Decimal(last) if last else None


def signal_plan(
    *,
    signal,
    strategy,
    account,
    gateway: Gateway,
    positions: dict[str, Decimal] | None,
    equity_currency: str | None = None,
) -> list[Leg]:
    """The legs `signal` needs now: for its own market, or for every market a close_all
    flattens. `positions` are the strategy's non-zero positions on the account (None: read
    them). The reference price of a leg is the alert's price for the alert's own market, and
    for the other markets a close_all flattens their last known price. Raises NothingToDo,
    PlanError, or the gateway's errors (unknown market, equity unavailable)."""
    if positions is None:
        positions = statements.strategy_positions(account_id=account.pk, strategy_id=strategy.pk)
    try:
        own_symbol = gateway.resolve_symbol(signal.ticker, account.market_type, strategy.symbol_override)
    except ValueError:
        if signal.action != "close_all":
            raise
        own_symbol = ""
    if signal.action == "close_all":
        symbols = sorted(positions)
        if not symbols:
            raise NothingToDo("no open position for this strategy")
    else:
        symbols = [own_symbol]
    legs: list[Leg] = []
    for symbol in symbols:
        market = gateway.market(symbol)
        price = (
            Decimal(signal.price) if symbol == own_symbol else (last_price(account, symbol) or Decimal(signal.price))
        )
        equity = None
        if strategy.sizing_mode == "percent_equity" and signal.action in ("buy", "sell"):
            equity = gateway.fetch_equity(
                equity_currency or (account.paper_quote_currency if account.is_paper else market.quote)
            )
        try:
            legs += plan_legs(
                action=signal.action,
                strategy=strategy,
                market=market,
                price=price,
                volume=Decimal(signal.volume),
                position=positions.get(symbol, Decimal("0")),
                equity=equity,
                spot=market.kind == "spot",
                market_position=signal.market_position,
                market_position_size=signal.market_position_size,
            )
        except NothingToDo:
            if signal.action != "close_all":
                raise
    if not legs:
        raise NothingToDo("no open position for this strategy")
    return legs


def legs_as_orders(*, signal, strategy, account, legs: list[Leg]) -> list[Order]:
    """The Order rows for planned legs, each with its deterministic client order id."""
    return [
        Order(
            signal=signal,
            strategy=strategy,
            account=account,
            leg=i,
            purpose=leg.purpose,
            client_order_id=(
                client_order_id_for(signal_id=signal.parent_id, leg=i, subscription_id=signal.subscription_id)
                if signal.parent_id
                else client_order_id_for(signal_id=signal.pk, leg=i)
            ),
            symbol=leg.symbol,
            side=leg.side,
            order_type=leg.order_type,
            reduce_only=leg.reduce_only,
            requested_qty=leg.qty,
            limit_price=leg.limit_price,
            signal_price=leg.price,
        )
        for i, leg in enumerate(legs, start=1)
    ]


# --- settings against the venue's markets --------------------------------------------------------


def market_errors(
    strategy, market_for: Callable[[str], MarketInfo | None], *, ticker: str = "BTCUSDT.P", price: Any = None
) -> dict[str, str]:
    """{field: message} for what the venue would refuse of `strategy`'s settings on
    `ticker`'s market: no such market, a size below its minimum, leverage above its limit.
    `market_for(symbol)` gives the market's rules (raising GatewayError when unknown), or
    None when they are not known here (then nothing is checked). `price` is a recent price
    of the market, for a quote-sized order's quantity."""
    account = strategy.account
    try:
        symbol = strategy.symbol_override or tradingview_to_ccxt(ticker, account.market_type)
        market = market_for(symbol)
    except (GatewayError, ValueError) as exc:
        field = "symbol_override" if strategy.symbol_override else "account"
        return {field: str(exc)}
    if market is None:
        return {}
    problems: dict[str, str] = {}
    value = Decimal(strategy.size_value) if strategy.size_value is not None else None
    if strategy.sizing_mode == "fixed_base" and value is not None:
        qty = market.round_qty(value)
        if qty < market.min_qty or qty <= 0:
            problems["size_value"] = (
                f"{value.normalize()} is below {market.symbol}'s minimum order of {market.min_qty.normalize()}"
            )
    if strategy.sizing_mode == "fixed_quote" and value is not None:
        if market.min_notional and value < market.min_notional:
            problems["size_value"] = (
                f"{value.normalize()} {market.quote} is below {market.symbol}'s minimum order "
                f"value of {market.min_notional.normalize()} {market.quote}"
            )
        elif price:
            qty = market.round_qty(value / Decimal(price))
            if qty < market.min_qty or qty <= 0:
                problems["size_value"] = (
                    f"{value.normalize()} {market.quote} buys {qty.normalize()} at "
                    f"{Decimal(price).normalize()}, below the minimum order of "
                    f"{market.min_qty.normalize()}"
                )
    if strategy.leverage and market.kind == "spot":
        problems["leverage"] = "leverage is set but the account trades spot"
    elif strategy.leverage and market.max_leverage and strategy.leverage > market.max_leverage:
        problems["leverage"] = f"{strategy.leverage}x is above {market.symbol}'s limit of {market.max_leverage}x"
    return problems


def protection_attach(*, signal, strategy, account, orders: list[Order]) -> None:
    """Give each opening leg the protection it will get once it fills (the strategy's
    defaults, overridden by the alert's levels where allowed), refusing — before anything is
    sent — a level that cannot guard it: a stop on the wrong side of the entry, a level the
    venue cannot place (strategies.validation.protection_errors)."""
    spec = protection_effective(strategy, signal.protection)
    if not spec:
        return
    venue = "paper" if signal.is_test else protection_venue(account)
    for order in orders:
        if order.purpose != Order.Purpose.OPEN:
            continue
        problems = protection_errors(
            spec, side=order.side, reference=order.signal_price, venue=venue, market_type=account.market_type
        )
        if problems:
            raise PlanError("; ".join(problems.values()))
        order.protection_spec = spec
