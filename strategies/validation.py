"""The one validator for a strategy's settings: the admin form, the API and the engine's
pre-flight all call `strategy_settings_errors`, so a setting one of them refuses cannot
reach a trade through another.

It catches what would otherwise surface as a failed or wrong trade (a size without a sizing
value, leverage on spot, a perpetual symbol on a spot account, a single order larger than
the maximum position…) and, given the account's markets, what the exchange would refuse (a
symbol it does not list, a size below its minimum, leverage above its limit).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.conf import settings

# Highest leverage each venue offers on its most liquid linear perpetuals; the per-market
# limit comes from the markets when they are known.
VENUE_MAX_LEVERAGE = {"bybit": 100, "binanceusdm": 125, "bitget": 125, "okx": 125}
CCXT_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$")
BPS_LIMIT = Decimal("1000")
PASSPHRASE_MIN_LENGTH = 12


def passphrase_error(raw: str) -> str:
    """A strategy's own webhook passphrase: at least 12 characters, no whitespace (a space
    copied into TradingView's message by accident would lock the strategy out, and spaces
    alone would look set while protecting nothing)."""
    if any(ch.isspace() for ch in raw):
        return "A passphrase cannot contain spaces or other whitespace."
    if len(raw) < PASSPHRASE_MIN_LENGTH:
        return f"A passphrase needs at least {PASSPHRASE_MIN_LENGTH} characters."
    return ""


def strategy_settings_errors(
    strategy: Any,
    *,
    market_errors: Callable[[Any], dict[str, str]] | None = None,
) -> dict[str, str]:
    """{field: message} for every setting of `strategy` (an instance carrying the candidate
    values) that cannot trade as configured. `market_errors(strategy)`, when given, adds
    the checks against the account's markets; it runs only when everything else is valid."""
    from strategies.models import Strategy

    errors: dict[str, str] = {}
    account = strategy.account if strategy.account_id else None
    mode = strategy.sizing_mode
    size = strategy.size_value
    if mode and mode != Strategy.SizingMode.SIGNAL:
        if size is None or size <= 0:
            errors["size_value"] = "This sizing mode needs a size value above zero."
        elif mode == Strategy.SizingMode.PERCENT_EQUITY and size > 100:
            errors["size_value"] = "A percent of equity must be at most 100."
    leverage = strategy.leverage
    if leverage is not None and leverage < 1:
        errors["leverage"] = "Leverage must be at least 1 (or empty)."
    if account is not None:
        if account.market_type == account.MarketType.SPOT:
            if leverage and leverage > 1:
                errors["leverage"] = f"Account {account.label} trades spot: leverage must be empty or 1."
        elif leverage and leverage > VENUE_MAX_LEVERAGE.get(account.exchange, 125):
            errors["leverage"] = (
                f"{account.get_exchange_display()} allows at most {VENUE_MAX_LEVERAGE[account.exchange]}x."
            )
        if account.mode == account.Mode.LIVE and not settings.LIVE_TRADING:
            errors["account"] = "Live trading is switched off (LIVE_TRADING); pick a paper or testnet account."
    symbol = (strategy.symbol_override or "").strip()
    if symbol:
        if not CCXT_SYMBOL.match(symbol):
            errors["symbol_override"] = "Use the ccxt form: BTC/USDT for spot, BTC/USDT:USDT for a linear perpetual."
        elif account is not None:
            perp = ":" in symbol
            if account.market_type == account.MarketType.SPOT and perp:
                errors["symbol_override"] = f"{symbol} is a perpetual but account {account.label} trades spot."
            if account.market_type == account.MarketType.LINEAR and not perp:
                errors["symbol_override"] = (
                    f"{symbol} is a spot symbol but account {account.label} trades linear perpetuals "
                    f"(did you mean {symbol}:{symbol.split('/')[1]}?)."
                )
    max_position = strategy.max_position
    if max_position is not None and max_position <= 0:
        errors["max_position"] = "Leave empty for no limit, or give a quantity above zero."
    elif mode == Strategy.SizingMode.FIXED_BASE and max_position and size and size > max_position:
        errors["size_value"] = f"One order ({size}) would exceed the maximum position ({max_position})."
    order_type = strategy.order_type
    offset = strategy.limit_offset_bps
    if order_type == Strategy.OrderType.LIMIT and offset is not None and abs(offset) > BPS_LIMIT:
        errors["limit_offset_bps"] = "An offset beyond 1000 bps (10%) is almost certainly a typo."
    slippage = strategy.max_slippage_bps
    if order_type == Strategy.OrderType.MARKETABLE_LIMIT:
        if slippage is None or slippage <= 0:
            errors["max_slippage_bps"] = "A marketable limit needs a maximum slippage above zero."
        elif slippage > BPS_LIMIT:
            errors["max_slippage_bps"] = "More than 1000 bps (10%) is almost certainly a typo."
    if order_type in (Strategy.OrderType.LIMIT, Strategy.OrderType.MARKETABLE_LIMIT):
        if not strategy.limit_timeout_seconds:
            errors["limit_timeout_seconds"] = "Limit orders need a timeout, or they could stay open forever."
    if not strategy.allowed_actions:
        errors["allowed_actions"] = "Allow at least one action, or disable the strategy instead."
    errors.update(_protection_settings_errors(strategy, account))
    if not errors and market_errors is not None and account is not None:
        errors.update(market_errors(strategy))
    return errors


# --- protective orders -------------------------------------------------------------------------

PROTECTION_KINDS = ("stop_loss", "take_profit", "trailing_stop")
PROTECTION_WORDS = {"stop_loss": "stop-loss", "take_profit": "take-profit", "trailing_stop": "trailing stop"}
#: What each venue's gateway places (docs/execution.md, "Protective orders"). Binance trails by
#: a percentage only (callbackRate); Bybit's trailing stop is a position setting, not an order
#: with a client id, so it is not offered there yet; Bitget and OKX are not wired yet.
PROTECTION_VENUES: dict[str, frozenset[str]] = {
    "paper": frozenset(PROTECTION_KINDS),
    "bybit": frozenset({"stop_loss", "take_profit"}),
    "binanceusdm": frozenset(PROTECTION_KINDS),
}
#: Binance USD-M TRAILING_STOP_MARKET callbackRate limits, in percent.
BINANCE_CALLBACK_RATE = (Decimal("0.1"), Decimal("10"))


def protection_venue(account: Any) -> str:
    return "paper" if account.is_paper else account.exchange


def protection_defaults(settings_owner: Any) -> dict[str, dict[str, str]]:
    """The default protection of a strategy (or anything carrying the same fields, e.g. a
    subscription that overrides them), in the alert's normalised form."""
    spec: dict[str, dict[str, str]] = {}
    for kind in PROTECTION_KINDS:
        value = getattr(settings_owner, f"{kind}_percent", None)
        if value is not None and value > 0:
            spec[kind] = {"percent": format(Decimal(value).normalize(), "f")}
    return spec


def protection_effective(settings_owner: Any, alert_spec: dict | None) -> dict[str, dict[str, str]]:
    """The strategy's defaults, each replaced by the alert's level when the strategy lets
    alerts override them."""
    spec = protection_defaults(settings_owner)
    if alert_spec and getattr(settings_owner, "alert_may_override_protection", True):
        spec.update({k: dict(v) for k, v in alert_spec.items() if k in PROTECTION_KINDS})
    return spec


def _venue_errors(kind: str, level: dict[str, str], venue: str, market_type: str) -> str:
    word = PROTECTION_WORDS[kind]
    if market_type == "spot" and venue != "paper":
        return f"a {word} is placed on linear perpetual accounts only (this account trades spot)"
    supported = PROTECTION_VENUES.get(venue)
    if supported is None:
        return f"protective orders are not supported on {venue} yet"
    if kind not in supported:
        return f"a {word} is not supported on {venue} yet"
    if kind == "trailing_stop" and venue == "binanceusdm":
        if "percent" not in level:
            return 'Binance trails by a percentage only: give trailing_stop as {"percent": p}'
        low, high = BINANCE_CALLBACK_RATE
        if not low <= Decimal(level["percent"]) <= high:
            return f"Binance accepts a trailing stop of {low}% to {high}% (got {level['percent']}%)"
    return ""


def protection_errors(
    spec: dict[str, dict[str, str]], *, side: str, reference: Decimal | None, venue: str, market_type: str = "linear"
) -> dict[str, str]:
    """{kind: reason} for every level of `spec` that cannot guard an entry on `side` (buy:
    a long) opened near `reference`: a stop on the wrong side of the entry (a long's stop
    above it), a take-profit on the wrong side, a level the venue cannot place."""
    errors: dict[str, str] = {}
    long = side == "buy"
    for kind, level in spec.items():
        word = PROTECTION_WORDS.get(kind, kind)
        problem = _venue_errors(kind, level, venue, market_type)
        if not problem and "price" in level and reference:
            price = Decimal(level["price"])
            below = price < reference
            if kind == "stop_loss" and below != long:
                problem = (
                    f"a {'long' if long else 'short'}'s stop-loss must be {'below' if long else 'above'} the entry "
                    f"(stop {price.normalize():f}, entry near {reference.normalize():f})"
                )
            elif kind == "take_profit" and below == long:
                problem = (
                    f"a {'long' if long else 'short'}'s take-profit must be {'above' if long else 'below'} the entry "
                    f"(take-profit {price.normalize():f}, entry near {reference.normalize():f})"
                )
        if not problem and "percent" in level and kind == "stop_loss" and Decimal(level["percent"]) >= 100:
            problem = "a stop-loss percent must be below 100"
        if not problem and "distance" in level and kind == "trailing_stop" and reference:
            if Decimal(level["distance"]) >= reference:
                problem = f"a trailing distance of {level['distance']} is beyond the price itself"
        if problem:
            errors[kind] = f"{word} refused: {problem}"
    return errors


def _protection_settings_errors(strategy: Any, account: Any) -> dict[str, str]:
    errors: dict[str, str] = {}
    for kind in PROTECTION_KINDS:
        value = getattr(strategy, f"{kind}_percent", None)
        if value is None:
            continue
        field = f"{kind}_percent"
        if value <= 0:
            errors[field] = "Leave empty for none, or give a percent above zero."
        elif value >= 100:
            errors[field] = "A percent from the entry must be below 100."
        elif account is not None:
            problem = _venue_errors(kind, {"percent": str(value)}, protection_venue(account), account.market_type)
            if problem:
                errors[field] = problem[0].upper() + problem[1:] + "."
    return errors
