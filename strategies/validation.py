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
    if not errors and market_errors is not None and account is not None:
        errors.update(market_errors(strategy))
    return errors
