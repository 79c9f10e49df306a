"""Exchange accounts, the orders we place for signals, their fills, and positions."""

from __future__ import annotations

import functools
import hashlib
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models

from strategies.breakers import BreakerLimits


@functools.lru_cache(maxsize=256)
def _rate_limit_key(exchange: str, api_key_enc: str) -> str:
    """Derived once per process and stored key (decrypting costs ~0.1 ms on every order
    otherwise); only the hash is kept, never the key. A re-encrypted key (rotation) derives
    the same bucket."""
    from .credentials import decrypt

    return "key-" + hashlib.sha256(f"{exchange}:{decrypt(api_key_enc)}".encode()).hexdigest()[:20]


class ExchangeAccount(BreakerLimits):
    class Exchange(models.TextChoices):
        BYBIT = "bybit", "Bybit"
        BINANCE = "binanceusdm", "Binance USD-M"
        BITGET = "bitget", "Bitget"
        OKX = "okx", "OKX"

    class Mode(models.TextChoices):
        PAPER = "paper", "Paper (simulated, no exchange)"
        TESTNET = "testnet", "Testnet / local emulator"
        LIVE = "live", "Live"

    class MarketType(models.TextChoices):
        SPOT = "spot", "Spot"
        LINEAR = "linear", "Linear perpetual"

    class PositionMode(models.TextChoices):
        ONE_WAY = "one_way", "One-way"
        HEDGE = "hedge", "Hedge (long and short apart)"

    class MarginMode(models.TextChoices):
        CROSS = "cross", "Cross"
        ISOLATED = "isolated", "Isolated"

    #: Venues whose gateway maps the engine's legs onto hedge-mode orders (Bitget
    #: holdSide/tradeSide, OKX posSide) and sends the margin mode with each order.
    HEDGE_VENUES = ("bitget", "okx")

    label = models.CharField(max_length=80, unique=True)
    exchange = models.CharField(max_length=16, choices=Exchange.choices, default=Exchange.BYBIT)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.PAPER)
    market_type = models.CharField(max_length=8, choices=MarketType.choices, default=MarketType.LINEAR)
    position_mode = models.CharField(
        max_length=8,
        choices=PositionMode.choices,
        default=PositionMode.ONE_WAY,
        help_text="Must match the account's setting at the exchange (Test connection checks it). Hedge mode: "
        "Bitget and OKX perpetuals only.",
    )
    margin_mode = models.CharField(
        max_length=8,
        choices=MarginMode.choices,
        default=MarginMode.CROSS,
        help_text="Sent with every perpetual order (Bitget marginMode, OKX tdMode). Isolated: Bitget and OKX only.",
    )
    # Fernet tokens (settings.CREDENTIALS_ENCRYPTION_KEYS); never displayed back.
    api_key_enc = models.TextField(blank=True)
    api_secret_enc = models.TextField(blank=True)
    api_password_enc = models.TextField(blank=True, help_text="OKX/Bitget API passphrase")
    base_url = models.URLField(
        blank=True, help_text="Testnet only: send this account's requests to this base URL (e.g. the local emulator)."
    )
    halted = models.BooleanField(default=False, help_text="Kill switch for every strategy on this account.")
    halted_at = models.DateTimeField(null=True, blank=True)
    halted_by = models.CharField(max_length=150, blank=True)
    halt_reason = models.CharField(max_length=255, blank=True)
    max_orders_per_second = models.DecimalField(
        max_digits=8, decimal_places=2, default=Decimal("10"), help_text="Shared by every worker process."
    )
    paper_fee_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("5.5"))
    paper_slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("2"))
    paper_quote_currency = models.CharField(max_length=10, default="USDT")
    paper_starting_balance = models.DecimalField(max_digits=30, decimal_places=8, default=Decimal("10000"))
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_exchange_display()}, {self.mode})"

    @property
    def is_paper(self) -> bool:
        return self.mode == self.Mode.PAPER

    def set_credentials(
        self, *, api_key: str | None = None, api_secret: str | None = None, api_password: str | None = None
    ) -> None:
        """Store credentials encrypted; None leaves a field unchanged."""
        from .credentials import encrypt

        if api_key is not None:
            self.api_key_enc = encrypt(api_key)
        if api_secret is not None:
            self.api_secret_enc = encrypt(api_secret)
        if api_password is not None:
            self.api_password_enc = encrypt(api_password)

    def credentials(self) -> dict[str, str]:
        from .credentials import decrypt

        return {
            "apiKey": decrypt(self.api_key_enc),
            "secret": decrypt(self.api_secret_enc),
            "password": decrypt(self.api_password_enc),
        }

    @property
    def rate_limit_key(self) -> str:
        """The venue rate-limits per API key: accounts sharing a key share a bucket. Derived
        by hashing, so no key appears in Redis."""
        if not self.api_key_enc or self.is_paper:
            return f"account-{self.pk}"
        return _rate_limit_key(self.exchange, self.api_key_enc)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key_enc and self.api_secret_enc)

    def clean(self) -> None:
        from django.conf import settings

        if self.mode == self.Mode.LIVE and not settings.LIVE_TRADING:
            raise ValidationError(
                {"mode": "Live trading is switched off (set LIVE_TRADING=true to allow live accounts)."}
            )
        if self.position_mode == self.PositionMode.HEDGE:
            if self.exchange not in self.HEDGE_VENUES:
                raise ValidationError(
                    {
                        "position_mode": f"Hedge mode is supported on Bitget and OKX only: switch this "
                        f"{self.get_exchange_display()} account (and the exchange account) to one-way mode."
                    }
                )
            if self.market_type != self.MarketType.LINEAR:
                raise ValidationError({"position_mode": "Hedge mode applies to perpetuals only: use one-way for spot."})
        if self.margin_mode == self.MarginMode.ISOLATED:
            if self.exchange not in self.HEDGE_VENUES:
                raise ValidationError(
                    {
                        "margin_mode": f"Isolated margin is sent with each order on Bitget and OKX only; on "
                        f"{self.get_exchange_display()} keep cross here and set the margin mode at the exchange."
                    }
                )
            if self.market_type != self.MarketType.LINEAR:
                raise ValidationError({"margin_mode": "Margin mode applies to perpetuals only: use cross for spot."})
        if self.base_url and self.mode != self.Mode.TESTNET:
            raise ValidationError({"base_url": "A base URL override is only allowed on testnet accounts."})


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUBMITTING = "submitting", "Submitting"
        OPEN = "open", "Open"
        PARTIALLY_FILLED = "partially_filled", "Partially filled"
        FILLED = "filled", "Filled"
        CANCELLED = "cancelled", "Cancelled"
        REJECTED = "rejected", "Rejected"
        UNKNOWN = "unknown", "Unknown (being resolved)"

    TERMINAL_STATUSES = (Status.FILLED, Status.CANCELLED, Status.REJECTED)

    class Side(models.TextChoices):
        BUY = "buy", "Buy"
        SELL = "sell", "Sell"

    class Purpose(models.TextChoices):
        OPEN = "open", "Open / add"
        CLOSE = "close", "Close"

    class Protection(models.TextChoices):
        STOP_LOSS = "stop_loss", "Stop-loss"
        TAKE_PROFIT = "take_profit", "Take-profit"
        TRAILING_STOP = "trailing_stop", "Trailing stop"

    signal = models.ForeignKey("signals.Signal", on_delete=models.PROTECT, related_name="orders")
    strategy = models.ForeignKey("strategies.Strategy", on_delete=models.PROTECT, related_name="orders")
    account = models.ForeignKey(ExchangeAccount, on_delete=models.PROTECT, related_name="orders")
    leg = models.PositiveSmallIntegerField()
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    client_order_id = models.CharField(max_length=32)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=8)  # market / limit
    reduce_only = models.BooleanField(default=False)
    requested_qty = models.DecimalField(max_digits=30, decimal_places=12)
    limit_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    signal_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    status = models.CharField(max_length=18, choices=Status.choices, default=Status.PENDING, db_index=True)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    filled_qty = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    avg_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    fee = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    fee_currency = models.CharField(max_length=16, blank=True)
    slippage_bps = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    realized_pnl = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        null=True,
        blank=True,
        help_text="What this order's closing fills realised for its strategy, net of their fees (quote"
        " currency); empty for an order that closed nothing.",
    )
    reason = models.TextField(blank=True, help_text="The exchange's reason for a rejection, in words")
    replies = models.JSONField(default=list, blank=True, help_text="Exchange replies, redacted")
    submit_count = models.PositiveSmallIntegerField(default=0)
    # Protective orders (stop-loss, take-profit, trailing stop): reduce-only trigger orders
    # resting at the exchange, each guarding the filled size of one entry (`protects`).
    protection = models.CharField(max_length=16, choices=Protection.choices, blank=True, default="")
    protects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="protective_orders"
    )
    generation = models.PositiveSmallIntegerField(
        default=0, help_text="Protective orders: 1, 2… as partial fills of the entry grow the protected size"
    )
    trigger_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    trail_percent = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    trail_distance = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    protection_spec = models.JSONField(
        null=True, blank=True, help_text="Entries: the protection to place once filled (alert and strategy merged)"
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    lookup_count = models.PositiveSmallIntegerField(default=0)
    not_found_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text='When lookups of an order with an unclear outcome first said "not found" (its resend clock)',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    acked_at = models.DateTimeField(null=True, blank=True)
    first_fill_at = models.DateTimeField(null=True, blank=True)
    last_fill_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="order_unique_client_id_per_account"),
            models.UniqueConstraint(fields=["signal", "leg"], name="order_unique_leg_per_signal"),
        ]
        indexes = [
            models.Index(fields=["account", "status"], name="order_account_status"),
            # Admin list filters, searches and the dashboard's 24-hour window.
            models.Index(fields=["strategy", "-id"], name="order_strategy_recent"),
            models.Index(fields=["account", "-id"], name="order_account_recent"),
            models.Index(fields=["status", "-id"], name="order_status_recent"),
            models.Index(fields=["client_order_id"], name="order_client_order_id"),
            models.Index(fields=["exchange_order_id"], name="order_exchange_order_id"),
            models.Index(fields=["symbol"], name="order_symbol"),
            models.Index(fields=["created_at"], name="order_created_at"),
            # The admin's protection filter, newest first.
            models.Index(
                fields=["protection", "-id"], condition=~models.Q(protection=""), name="order_protection_recent"
            ),
            # The protection sweeper: protective orders not final yet.
            models.Index(
                fields=["status", "id"],
                condition=~models.Q(protection="") & ~models.Q(status__in=["filled", "cancelled", "rejected"]),
                name="order_protective_live",
            ),
        ]

    def __str__(self) -> str:
        qty = self.requested_qty
        qty = f"{qty.normalize():f}" if isinstance(qty, Decimal) else qty
        return f"{self.client_order_id} {self.side} {qty} {self.symbol} [{self.status}]"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL_STATUSES

    @property
    def is_protective(self) -> bool:
        return bool(self.protection)

    @property
    def level(self) -> str:
        """A protective order's level in words: "@ 95000", "trail 1.5%", "trail 250"."""
        if self.trigger_price is not None:
            return f"@ {self.trigger_price.normalize():f}"
        if self.trail_percent is not None:
            return f"trail {self.trail_percent.normalize():f}%"
        if self.trail_distance is not None:
            return f"trail {self.trail_distance.normalize():f}"
        return ""


class Fill(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="fills")
    trade_id = models.CharField(max_length=64)
    qty = models.DecimalField(max_digits=30, decimal_places=12)
    price = models.DecimalField(max_digits=30, decimal_places=12)
    fee = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    fee_currency = models.CharField(max_length=16, blank=True)
    filled_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["order", "trade_id"], name="fill_unique_trade_per_order")]
        indexes = [
            models.Index(fields=["filled_at"], name="fill_filled_at"),
            models.Index(fields=["trade_id"], name="fill_trade_id"),
        ]

    def __str__(self) -> str:
        return f"{self.qty} @ {self.price}"


class Position(models.Model):
    """Net position per account and symbol (signed: + long, - short), and per strategy
    when `strategy` is set (that strategy's attributed share)."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="positions")
    strategy = models.ForeignKey(
        "strategies.Strategy", null=True, blank=True, on_delete=models.CASCADE, related_name="positions"
    )
    symbol = models.CharField(max_length=64)
    qty = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    avg_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    realized_pnl = models.DecimalField(
        max_digits=30, decimal_places=12, default=0, help_text="From prices alone, before fees."
    )
    fees_paid = models.DecimalField(
        max_digits=30,
        decimal_places=12,
        default=0,
        help_text="Fees of every fill, in the quote currency (a fee taken in the base coin is valued at its"
        " fill's price; one in a third currency, e.g. a discount token, is not counted).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "symbol"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "symbol"],
                condition=models.Q(strategy__isnull=True),
                name="position_unique_account_symbol",
            ),
            models.UniqueConstraint(
                fields=["account", "strategy", "symbol"],
                condition=models.Q(strategy__isnull=False),
                name="position_unique_strategy_symbol",
            ),
        ]

    @property
    def net_realized_pnl(self):
        """What closing has earned after every fee paid on this position's fills."""
        return self.realized_pnl - self.fees_paid

    def __str__(self) -> str:
        owner = self.strategy.strategy_id if self.strategy_id else "account"
        return f"{self.account.label}/{owner} {self.symbol} {self.qty}"


class PaperBalance(models.Model):
    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="paper_balances")
    currency = models.CharField(max_length=16)
    total = models.DecimalField(max_digits=30, decimal_places=12, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "currency"], name="paper_balance_unique")]

    def __str__(self) -> str:
        return f"{self.currency} {self.total}"


class PaperOrder(models.Model):
    """The paper exchange's own order book: what a venue would hold. Our `Order` rows are
    the client side; this table is the "exchange" side, so paper trading exercises the
    same lookups and idempotency rules as a real venue."""

    account = models.ForeignKey(ExchangeAccount, on_delete=models.CASCADE, related_name="paper_orders")
    client_order_id = models.CharField(max_length=36)
    symbol = models.CharField(max_length=64)
    side = models.CharField(max_length=4)
    order_type = models.CharField(max_length=8)
    reduce_only = models.BooleanField(default=False)
    qty = models.DecimalField(max_digits=30, decimal_places=12)
    limit_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    status = models.CharField(max_length=18)
    filled = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    average = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    fee = models.DecimalField(max_digits=30, decimal_places=12, default=0)
    reason = models.CharField(max_length=255, blank=True)
    #: A test signal's order: filled like any other, never part of the book's positions or balance.
    scratch = models.BooleanField(default=False)
    # Protective orders (order_type stop / take / trail): the trigger level, and for a
    # trailing stop its trail and the best price seen since it was placed.
    trigger_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    trail_percent = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    trail_distance = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    best_price = models.DecimalField(max_digits=30, decimal_places=12, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "client_order_id"], name="paper_order_unique_client_id")
        ]

    def __str__(self) -> str:
        return f"paper {self.client_order_id} {self.side} {self.qty} {self.symbol} [{self.status}]"
