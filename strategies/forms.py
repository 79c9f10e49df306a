"""The strategy settings form: the admin's face of `strategies.validation`, the one
validator the API and the engine use too."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from .models import ACTIONS, Strategy, Subscription
from .validation import passphrase_error, strategy_settings_errors


def market_errors(strategy: Strategy) -> dict[str, str]:
    """Checks against the account's exchange markets from what is already known here (no
    exchange call: the admin validates inside a database transaction)."""
    from execution.services import strategy_validate_market

    if strategy.account_id is None:
        return {}
    return strategy_validate_market(strategy=strategy)


class SizingPreviewForm(forms.Form):
    """The strategy page's "what would this alert send" form (execution.services.strategy_sizing_preview).
    Its inputs sit inside the change form's page but belong to their own GET form ("tv-preview")."""

    preview_action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS], initial="buy", label="Action")
    preview_ticker = forms.RegexField(
        r"^[A-Za-z0-9_.!:/\-]{1,64}$", required=False, initial="BTCUSDT.P", label="Ticker"
    )
    preview_price = forms.DecimalField(
        min_value=Decimal("0.000000000001"), max_digits=30, decimal_places=12, label="Price"
    )
    preview_volume = forms.DecimalField(
        min_value=Decimal("0.000000000001"),
        max_digits=30,
        decimal_places=12,
        required=False,
        initial=Decimal("0.01"),
        label="Alert volume",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.widget.attrs["form"] = "tv-preview"


class SubscriptionForm(forms.ModelForm):
    """One account subscription in the strategy's page: its settings, as a run on it would
    see them, go through the one settings validator (strategies.validation)."""

    class Meta:
        model = Subscription
        fields = ("account", "enabled", "halted", "sizing_mode", "size_value", "max_position", "leverage")

    def clean(self):
        cleaned = super().clean()
        if self.errors or cleaned.get("DELETE") or not cleaned.get("account"):
            return cleaned
        from .subscriptions import effective_strategy

        sub = self.instance
        for field in ("account", "enabled", "sizing_mode", "size_value", "max_position", "leverage"):
            setattr(sub, field, cleaned.get(field))
        if sub.sizing_mode == Subscription.SizingMode.MULTIPLIER and not (sub.size_value and sub.size_value > 0):
            raise forms.ValidationError({"size_value": "A multiplier of the alert's volume needs a value above zero."})
        strategy = getattr(sub, "strategy", None) if sub.strategy_id else None
        if strategy is None:
            return cleaned
        problems = strategy_settings_errors(effective_strategy(strategy, sub))
        own = {
            k: v
            for k, v in problems.items()
            if k in ("size_value", "sizing_mode", "max_position", "leverage", "account")
        }
        if own:
            raise forms.ValidationError(own)
        return cleaned


class StrategyAdminForm(forms.ModelForm):
    allowed_actions = forms.MultipleChoiceField(
        choices=[(a, a) for a in ACTIONS],
        # A declared field gets no initial value from the model's default: without this a new
        # strategy starts with nothing ticked and its first save is refused.
        initial=list(ACTIONS),
        required=False,  # none ticked: the validator says why that cannot trade
        widget=forms.CheckboxSelectMultiple,
        help_text="Alerts with any other action are recorded as rejected.",
    )
    new_passphrase = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Set a passphrase",
        help_text="Write-only: stored hashed, never shown again. Leave empty to keep the current one. "
        "When set, this strategy's alerts must carry it instead of the global passphrase "
        "(at least 12 characters, no spaces).",
    )
    clear_passphrase = forms.BooleanField(
        required=False, label="Remove this strategy's passphrase (use the global one again)"
    )

    class Meta:
        model = Strategy
        exclude = ("passphrase_hash", "halted", "halted_at", "halted_by", "halt_reason")

    def clean_new_passphrase(self) -> str:
        raw = self.cleaned_data.get("new_passphrase") or ""
        if raw:
            error = passphrase_error(raw)
            if error:
                raise forms.ValidationError(error)
        return raw

    def clean(self):
        data = super().clean()
        if data.get("new_passphrase") and data.get("clear_passphrase"):
            self.add_error("clear_passphrase", "Either set a new passphrase or remove it, not both.")
        if self.errors:
            return data
        candidate = self.instance
        for name, value in data.items():
            if hasattr(candidate, name) and name not in ("new_passphrase", "clear_passphrase"):
                setattr(candidate, name, value)
        for field, message in strategy_settings_errors(candidate, market_errors=market_errors).items():
            self.add_error(field if field in self.fields else None, message)
        return data
