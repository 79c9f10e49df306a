"""The strategy settings form: catches the mistakes that would otherwise surface as a failed
or wrong trade (size without a sizing value, leverage on spot, a perp symbol on a spot
account, a single order larger than the maximum position...)."""

from __future__ import annotations

import re
from decimal import Decimal

from django import forms
from django.conf import settings

from .models import ACTIONS, Strategy

# Highest leverage each venue offers on its most liquid linear perpetuals; the per-market
# limit comes from the gateway hook below when the engine provides it.
VENUE_MAX_LEVERAGE = {"bybit": 100, "binanceusdm": 125, "bitget": 125, "okx": 125}
CCXT_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}(:[A-Z0-9]{1,20})?$")
BPS_LIMIT = Decimal("1000")


def market_errors(strategy: Strategy) -> dict[str, str]:
    """Checks against the account's exchange markets (symbol exists, size above the
    market minimum, leverage within the market's limit).

    Hook for the engine: when `execution.services.strategy_validate_market(*, strategy)`
    exists it is called and its {field: message} answer becomes form errors. It must use
    the gateway's cached markets: the admin validates inside a database transaction, where
    no exchange call may happen."""
    from execution import services as execution_services

    check = getattr(execution_services, "strategy_validate_market", None)
    if check is None or strategy.account_id is None:
        return {}
    try:
        return dict(check(strategy=strategy) or {})
    except NotImplementedError:
        return {}


class StrategyAdminForm(forms.ModelForm):
    allowed_actions = forms.MultipleChoiceField(
        choices=[(a, a) for a in ACTIONS],
        widget=forms.CheckboxSelectMultiple,
        help_text="Alerts with any other action are recorded as rejected.",
    )
    new_passphrase = forms.CharField(
        required=False,
        strip=True,
        min_length=12,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Set a passphrase",
        help_text="Write-only: stored hashed, never shown again. Leave empty to keep the current one. "
        "When set, this strategy's alerts must carry it instead of the global passphrase.",
    )
    clear_passphrase = forms.BooleanField(
        required=False, label="Remove this strategy's passphrase (use the global one again)"
    )

    class Meta:
        model = Strategy
        exclude = ("passphrase_hash", "halted", "halted_at", "halted_by", "halt_reason")

    def clean(self):
        data = super().clean()
        errors: dict[str, str] = {}
        account = data.get("account")
        mode = data.get("sizing_mode")
        size = data.get("size_value")
        if mode and mode != Strategy.SizingMode.SIGNAL:
            if size is None or size <= 0:
                errors["size_value"] = "This sizing mode needs a size value above zero."
            elif mode == Strategy.SizingMode.PERCENT_EQUITY and size > 100:
                errors["size_value"] = "A percent of equity must be at most 100."
        leverage = data.get("leverage")
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
        symbol = (data.get("symbol_override") or "").strip()
        if symbol:
            if not CCXT_SYMBOL.match(symbol):
                errors["symbol_override"] = (
                    "Use the ccxt form: BTC/USDT for spot, BTC/USDT:USDT for a linear perpetual."
                )
            elif account is not None:
                perp = ":" in symbol
                if account.market_type == account.MarketType.SPOT and perp:
                    errors["symbol_override"] = f"{symbol} is a perpetual but account {account.label} trades spot."
                if account.market_type == account.MarketType.LINEAR and not perp:
                    errors["symbol_override"] = (
                        f"{symbol} is a spot symbol but account {account.label} trades linear perpetuals "
                        f"(did you mean {symbol}:{symbol.split('/')[1]}?)."
                    )
        max_position = data.get("max_position")
        if max_position is not None and max_position <= 0:
            errors["max_position"] = "Leave empty for no limit, or give a quantity above zero."
        elif mode == Strategy.SizingMode.FIXED_BASE and max_position and size and size > max_position:
            errors["size_value"] = f"One order ({size}) would exceed the maximum position ({max_position})."
        order_type = data.get("order_type")
        offset = data.get("limit_offset_bps")
        if order_type == Strategy.OrderType.LIMIT and offset is not None and abs(offset) > BPS_LIMIT:
            errors["limit_offset_bps"] = "An offset beyond 1000 bps (10%) is almost certainly a typo."
        slippage = data.get("max_slippage_bps")
        if order_type == Strategy.OrderType.MARKETABLE_LIMIT:
            if slippage is None or slippage <= 0:
                errors["max_slippage_bps"] = "A marketable limit needs a maximum slippage above zero."
            elif slippage > BPS_LIMIT:
                errors["max_slippage_bps"] = "More than 1000 bps (10%) is almost certainly a typo."
        if order_type in (Strategy.OrderType.LIMIT, Strategy.OrderType.MARKETABLE_LIMIT):
            if not data.get("limit_timeout_seconds"):
                errors["limit_timeout_seconds"] = "Limit orders need a timeout, or they could stay open forever."
        if not data.get("allowed_actions"):
            errors["allowed_actions"] = "Allow at least one action, or disable the strategy instead."
        if data.get("new_passphrase") and data.get("clear_passphrase"):
            errors["clear_passphrase"] = "Either set a new passphrase or remove it, not both."
        for field, message in errors.items():
            self.add_error(field, message)
        if not errors and not self.errors:
            candidate = self.instance
            for name, value in data.items():
                if hasattr(candidate, name) and name not in ("new_passphrase", "clear_passphrase"):
                    setattr(candidate, name, value)
            for field, message in market_errors(candidate).items():
                self.add_error(field if field in self.fields else None, message)
        return data
