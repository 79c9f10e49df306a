"""What the trader configures: strategies, their execution settings, the kill switches, and
the audit trail of every change to them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .breakers import BreakerLimits

ACTIONS = ("buy", "sell", "close_long", "close_short", "close_all")
EXIT_ACTIONS = frozenset({"close_long", "close_short", "close_all"})


def _default_allowed_actions() -> list[str]:
    return list(ACTIONS)


class Strategy(BreakerLimits):
    class SizingMode(models.TextChoices):
        SIGNAL = "signal", "Signal volume (base quantity from the alert)"
        FIXED_BASE = "fixed_base", "Fixed base quantity"
        FIXED_QUOTE = "fixed_quote", "Fixed quote amount (e.g. 100 USDT)"
        PERCENT_EQUITY = "percent_equity", "Percent of account equity"

    class OrderType(models.TextChoices):
        MARKET = "market", "Market"
        LIMIT = "limit", "Limit at an offset from the signal price"
        MARKETABLE_LIMIT = "marketable_limit", "Marketable limit capped at max slippage"

    class OnOpposite(models.TextChoices):
        REVERSE = "reverse", "Close, then open the other way"
        CLOSE_ONLY = "close_only", "Close only"
        IGNORE = "ignore", "Ignore the signal"

    strategy_id = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9_.\-]+$", "Letters, digits, '_', '.' and '-' only.")],
        help_text="The value of strategy_id in the TradingView alert message.",
    )
    name = models.CharField(max_length=120, blank=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True, help_text="Disabled strategies record alerts but never trade.")
    halted = models.BooleanField(default=False, help_text="Kill switch: alerts are recorded as blocked.")
    halted_at = models.DateTimeField(null=True, blank=True)
    halted_by = models.CharField(max_length=150, blank=True)
    halt_reason = models.CharField(max_length=255, blank=True)
    passphrase_hash = models.CharField(
        max_length=128,
        blank=True,
        help_text="Optional per-strategy passphrase (stored hashed). When set, it replaces the global one.",
    )

    account = models.ForeignKey(
        "execution.ExchangeAccount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="strategies",
    )
    symbol_override = models.CharField(
        max_length=64,
        blank=True,
        help_text="ccxt symbol to trade regardless of the alert's ticker, e.g. BTC/USDT:USDT.",
    )
    sizing_mode = models.CharField(max_length=16, choices=SizingMode.choices, default=SizingMode.SIGNAL)
    size_value = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Base quantity, quote amount or percent, depending on the sizing mode.",
    )
    leverage = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(200)]
    )
    max_position = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Largest absolute position (base quantity) this strategy may hold.",
    )
    order_type = models.CharField(max_length=20, choices=OrderType.choices, default=OrderType.MARKET)
    limit_offset_bps = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    max_slippage_bps = models.DecimalField(
        max_digits=10, decimal_places=2, default=50, validators=[MinValueValidator(0)]
    )
    limit_timeout_seconds = models.PositiveIntegerField(
        default=60, help_text="A limit order still open after this long is cancelled; what filled is kept."
    )
    on_opposite = models.CharField(max_length=12, choices=OnOpposite.choices, default=OnOpposite.REVERSE)
    allowed_actions = models.JSONField(default=_default_allowed_actions)
    max_signal_age_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Entries older than this (from fired_at, else bar_time) are rejected; exits pass. 0: no limit."
        " Empty: the server's SIGNAL_MAX_AGE_SECONDS (default 300), from fired_at only.",
    )
    dedup_window_seconds = models.PositiveIntegerField(
        default=60, help_text="Identical alerts without bar_time within this window are one signal."
    )
    expected_interval_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Flag the strategy as silent when no alert arrives for this long."
    )

    # Protective orders placed at the exchange after an entry fills (docs/execution.md,
    # "Protective orders"). The same fields may later sit on a subscription to override these.
    class Unprotected(models.TextChoices):
        FLATTEN = "flatten", "Flatten the position"
        NOTIFY = "notify", "Keep the position and notify"

    stop_loss_percent = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Default stop-loss, in percent from the entry's average fill price (empty: none).",
    )
    take_profit_percent = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Default take-profit, in percent from the entry's average fill price (empty: none).",
    )
    trailing_stop_percent = models.DecimalField(
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Default trailing stop, in percent from the best price since the entry (empty: none).",
    )
    alert_may_override_protection = models.BooleanField(
        default=True,
        help_text="An alert's stop_loss / take_profit / trailing_stop replace these defaults. Off: they are ignored.",
    )
    unprotected_action = models.CharField(
        max_length=8,
        choices=Unprotected.choices,
        default=Unprotected.FLATTEN,
        help_text="What to do with a position whose protective order the exchange refused.",
    )
    fans_out = models.BooleanField(
        default=False,
        editable=False,
        help_text="Kept by strategies.subscriptions: an alert runs once per enabled subscription (True), or"
        " directly on the strategy's own account with its own settings, as before subscriptions (False).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["strategy_id"]
        verbose_name_plural = "strategies"

    def __str__(self) -> str:
        return self.strategy_id

    @property
    def accepts_signals(self) -> bool:
        return self.enabled and not self.halted

    def set_passphrase(self, raw: str | None) -> None:
        self.passphrase_hash = hash_passphrase(raw) if raw else ""

    def check_passphrase(self, raw: str) -> bool:
        return verify_passphrase(raw, self.passphrase_hash)


class Subscription(models.Model):
    """One exchange account a strategy trades on, with its own switch and sizing. An empty
    setting takes the strategy's (strategies.subscriptions.effective_strategy): a field added
    to the strategy later (e.g. protective orders) is overridden by adding the same name here
    and to OVERRIDABLE."""

    class SizingMode(models.TextChoices):
        STRATEGY = "", "As the strategy"
        SIGNAL = "signal", "Signal volume (base quantity from the alert)"
        MULTIPLIER = "multiplier", "Multiplier of the alert's volume"
        FIXED_BASE = "fixed_base", "Fixed base quantity"
        FIXED_QUOTE = "fixed_quote", "Fixed quote amount (e.g. 100 USDT)"
        PERCENT_EQUITY = "percent_equity", "Percent of account equity"

    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="subscriptions")
    account = models.ForeignKey("execution.ExchangeAccount", on_delete=models.PROTECT, related_name="subscriptions")
    enabled = models.BooleanField(default=True, help_text="Disabled: alerts are not sent to this account.")
    halted = models.BooleanField(default=False, help_text="Kill switch of this subscription only.")
    halted_at = models.DateTimeField(null=True, blank=True)
    halted_by = models.CharField(max_length=150, blank=True)
    halt_reason = models.CharField(max_length=255, blank=True)
    sizing_mode = models.CharField(max_length=16, choices=SizingMode.choices, default="", blank=True)
    size_value = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Base quantity, quote amount, percent or multiplier, depending on the sizing mode.",
    )
    max_position = models.DecimalField(
        max_digits=30, decimal_places=12, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    leverage = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(200)]
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["strategy", "id"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "account"], name="subscription_unique_account_per_strategy")
        ]

    def __str__(self) -> str:
        return f"{self.strategy_id} on {self.account_id}"

    #: Settings a subscription may set for itself; empty (None or "") means the strategy's.
    OVERRIDABLE = ("sizing_mode", "size_value", "max_position", "leverage")

    @property
    def overrides(self) -> dict:
        return {f: getattr(self, f) for f in self.OVERRIDABLE if getattr(self, f) not in (None, "")}


def hash_passphrase(raw: str) -> str:
    """Salted, keyed SHA-256. Passphrases are machine secrets checked on the hot path, so a
    slow password hash (hundreds of ms) would cost every alert; the server key keeps a
    leaked database row from being brute-forced offline."""
    salt = secrets.token_hex(8)
    digest = hmac.new(settings.SECRET_KEY.encode(), f"{salt}:{raw}".encode(), hashlib.sha256).hexdigest()
    return f"hs256${salt}${digest}"


def verify_passphrase(raw: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$", 2)
    except ValueError:
        return False
    if scheme != "hs256":
        return False
    candidate = hmac.new(settings.SECRET_KEY.encode(), f"{salt}:{raw}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(candidate, digest)


def _new_install_id() -> str:
    return secrets.token_hex(3)


class TradingControl(models.Model):
    """The single row holding the global kill switch, and this installation's id (part of
    every client order id, so a reset database never reuses an old id at the exchange)."""

    halted = models.BooleanField(default=False)
    halted_at = models.DateTimeField(null=True, blank=True)
    halted_by = models.CharField(max_length=150, blank=True)
    halt_reason = models.CharField(max_length=255, blank=True)
    install_id = models.CharField(max_length=8, default=_new_install_id, editable=False)

    class Meta:
        verbose_name = "global kill switch"
        verbose_name_plural = "global kill switch"

    def __str__(self) -> str:
        return "Trading HALTED" if self.halted else "Trading enabled"

    @classmethod
    def current(cls) -> TradingControl:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @classmethod
    def is_halted(cls) -> bool:
        return cls.objects.filter(pk=1, halted=True).exists()


class AuditEntry(models.Model):
    """Who changed what, when: kill switches and strategy settings."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=150)
    target_type = models.CharField(max_length=32)  # strategy / account / global
    target_id = models.CharField(max_length=64, blank=True)
    strategy = models.ForeignKey(Strategy, null=True, blank=True, on_delete=models.CASCADE, related_name="audit")
    field = models.CharField(max_length=64)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.target_type}:{self.target_id} {self.field}"


class OperatorMark(models.Model):
    """When an operator last looked at something the dashboard counts "since you last
    looked" (refused alerts), with what it counted then (`data`), so the count is exact."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=32)
    at = models.DateTimeField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="operator_mark_one_per_user_and_key")]

    def __str__(self) -> str:
        return f"{self.user_id} saw {self.key} at {self.at:%Y-%m-%d %H:%M:%S}"
