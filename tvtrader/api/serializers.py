"""What the API shows and accepts. Accounts never carry their credentials."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from execution.models import ExchangeAccount, Fill, Order, Position
from signals.models import Signal
from strategies.breakers import BREAKER_FIELDS
from strategies.forms import market_errors
from strategies.halts import strategy_halt_reason, trading_state
from strategies.models import ACTIONS, Strategy, Subscription, TradingControl
from strategies.subscriptions import subscriptions_sync
from strategies.validation import passphrase_error, strategy_settings_errors


class SignalSerializer(serializers.ModelSerializer):
    strategy = serializers.SlugRelatedField(slug_field="strategy_id", read_only=True)

    class Meta:
        model = Signal
        fields = [
            "id",
            "strategy",
            "strategy_key",
            "status",
            "reason",
            "errors",
            "is_test",
            "action",
            "ticker",
            "exchange",
            "price",
            "volume",
            "timeframe",
            "bar_time",
            "tv_order_id",
            "comment",
            "market_position",
            "market_position_size",
            "position_size",
            "prev_market_position",
            "content_type",
            "remote_addr",
            "duplicate_count",
            "last_duplicate_at",
            "fired_at",
            "received_at",
            "committed_at",
            "enqueued_at",
            "started_at",
            "sent_at",
            "acked_at",
            "first_fill_at",
            "filled_at",
            "finished_at",
            "attempts",
            "parent",
            "subscription",
        ]
        read_only_fields = fields


class SignalDetailSerializer(SignalSerializer):
    orders = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    accounts = serializers.SerializerMethodField(
        help_text="An alert fanned out to several accounts: each account's run (its signal id, account, status,"
        " reason, orders)."
    )

    class Meta(SignalSerializer.Meta):
        fields = SignalSerializer.Meta.fields + ["payload", "orders", "accounts"]
        read_only_fields = fields

    def get_accounts(self, obj: Signal) -> list[dict]:
        children = obj.children.select_related("subscription__account").prefetch_related("orders").order_by("id")
        return [
            {
                "signal": child.pk,
                "account": child.subscription.account.label if child.subscription_id else None,
                "status": child.status,
                "reason": child.reason,
                "sent_at": child.sent_at,
                "orders": [
                    {
                        "id": o.pk,
                        "client_order_id": o.client_order_id,
                        "side": o.side,
                        "symbol": o.symbol,
                        "requested_qty": str(o.requested_qty),
                        "filled_qty": str(o.filled_qty),
                        "avg_price": str(o.avg_price) if o.avg_price is not None else None,
                        "status": o.status,
                    }
                    for o in sorted(child.orders.all(), key=lambda o: o.leg)
                ],
            }
            for child in children
        ]


class OrderSerializer(serializers.ModelSerializer):
    strategy = serializers.SlugRelatedField(slug_field="strategy_id", read_only=True)
    account = serializers.SlugRelatedField(slug_field="label", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "signal",
            "strategy",
            "account",
            "leg",
            "purpose",
            "client_order_id",
            "symbol",
            "side",
            "order_type",
            "reduce_only",
            "requested_qty",
            "limit_price",
            "signal_price",
            "status",
            "exchange_order_id",
            "filled_qty",
            "avg_price",
            "fee",
            "fee_currency",
            "slippage_bps",
            "reason",
            "protection",
            "protects",
            "generation",
            "trigger_price",
            "trail_percent",
            "trail_distance",
            "cancel_requested_at",
            "submit_count",
            "lookup_count",
            "created_at",
            "submitted_at",
            "acked_at",
            "first_fill_at",
            "last_fill_at",
            "closed_at",
            "updated_at",
        ]
        read_only_fields = fields


class FillSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="order.symbol", read_only=True)
    side = serializers.CharField(source="order.side", read_only=True)
    strategy = serializers.CharField(source="order.strategy.strategy_id", read_only=True)

    class Meta:
        model = Fill
        fields = ["id", "order", "strategy", "symbol", "side", "trade_id", "qty", "price", "fee", "fee_currency"]
        fields += ["filled_at"]
        read_only_fields = fields


class PositionSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="label", read_only=True)
    strategy = serializers.SlugRelatedField(slug_field="strategy_id", read_only=True)
    net_realized_pnl = serializers.DecimalField(max_digits=30, decimal_places=12, read_only=True)
    protection = serializers.SerializerMethodField(
        help_text="The stop-loss / take-profit / trailing stop orders guarding this (strategy) position."
    )

    class Meta:
        model = Position
        fields = [
            "id",
            "account",
            "strategy",
            "symbol",
            "qty",
            "avg_price",
            "realized_pnl",
            "fees_paid",
            "net_realized_pnl",
            "protection",
            "updated_at",
        ]
        read_only_fields = fields

    def get_protection(self, obj) -> list[dict]:
        from execution.selectors import position_protection

        return [
            {k: (str(v) if v is not None and k in ("trigger_price", "trail_percent", "trail_distance", "qty") else v)
             for k, v in guard.items()}
            for guard in position_protection(obj)
        ]  # fmt: skip


class AccountSerializer(serializers.ModelSerializer):
    """Everything but the credentials: only whether they are set."""

    has_credentials = serializers.BooleanField(read_only=True)

    class Meta:
        model = ExchangeAccount
        fields = [
            "id",
            "label",
            "exchange",
            "mode",
            "market_type",
            "position_mode",
            "has_credentials",
            "halted",
            "halted_at",
            "halted_by",
            "halt_reason",
            "max_orders_per_second",
            *BREAKER_FIELDS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscriptionSerializer(serializers.ModelSerializer):
    """One account the strategy trades on: its switch, its own settings (null/"" = the
    strategy's) and the strategy's positions and P&L on that account."""

    account = serializers.CharField(source="account.label", read_only=True)
    account_id = serializers.IntegerField(read_only=True)
    positions = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = ["id", "account", "account_id", "enabled", "halted", "halted_at", "halted_by", "halt_reason"]
        fields += ["sizing_mode", "size_value", "max_position", "leverage", "positions"]
        read_only_fields = fields

    def get_positions(self, obj: Subscription) -> list[dict]:
        rows = Position.objects.filter(account_id=obj.account_id, strategy_id=obj.strategy_id).order_by("symbol")
        return [
            {
                "symbol": p.symbol,
                "qty": str(p.qty),
                "avg_price": str(p.avg_price) if p.avg_price is not None else None,
                "realized_pnl": str(p.realized_pnl),
                "fees_paid": str(p.fees_paid),
                "net_realized_pnl": str(p.net_realized_pnl),
            }
            for p in rows
        ]


STRATEGY_EDITABLE = [
    "name",
    "description",
    "enabled",
    "account",
    "symbol_override",
    "sizing_mode",
    "size_value",
    "leverage",
    "max_position",
    "order_type",
    "limit_offset_bps",
    "max_slippage_bps",
    "limit_timeout_seconds",
    "on_opposite",
    "allowed_actions",
    "max_signal_age_seconds",
    "dedup_window_seconds",
    "expected_interval_minutes",
    *BREAKER_FIELDS,
    "stop_loss_percent",
    "take_profit_percent",
    "trailing_stop_percent",
    "alert_may_override_protection",
    "unprotected_action",
]


class StrategySerializer(serializers.ModelSerializer):
    account = serializers.PrimaryKeyRelatedField(
        queryset=ExchangeAccount.objects.all(), allow_null=True, required=False
    )
    allowed_actions = serializers.ListField(child=serializers.ChoiceField(choices=ACTIONS), required=False)
    passphrase = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=200,
        trim_whitespace=False,
        help_text="Set this strategy's own webhook passphrase (stored hashed; at least 12 characters, no"
        " whitespace); empty removes it.",
    )
    has_passphrase = serializers.SerializerMethodField()
    subscriptions = SubscriptionSerializer(many=True, read_only=True)
    trading_state = serializers.SerializerMethodField(
        help_text="halted / disabled / no account / live / paper / testnet"
    )
    blocked_because = serializers.SerializerMethodField(
        help_text="Why alerts are blocked now (global, strategy or account kill switch, disabled), or empty."
    )

    class Meta:
        model = Strategy
        fields = ["id", "strategy_id"] + STRATEGY_EDITABLE
        fields += ["passphrase", "has_passphrase", "trading_state", "blocked_because"]
        fields += ["halted", "halted_at", "halted_by", "halt_reason"]
        fields += ["subscriptions", "created_at", "updated_at"]
        read_only_fields = ["id", "strategy_id", "halted", "halted_at", "halted_by", "halt_reason"]
        read_only_fields += ["created_at", "updated_at"]

    def get_has_passphrase(self, obj: Strategy) -> bool:
        return bool(obj.passphrase_hash)

    def _global_halted(self) -> bool:
        if "global_halted" not in self.context:  # once per response, not once per strategy
            self.context["global_halted"] = TradingControl.is_halted()
        return self.context["global_halted"]

    def get_trading_state(self, obj: Strategy) -> str:
        return trading_state(obj, global_halted=self._global_halted())

    def get_blocked_because(self, obj: Strategy) -> str:
        return strategy_halt_reason(obj, global_halted=self._global_halted())

    def validate_passphrase(self, value: str) -> str:
        error = passphrase_error(value) if value else ""
        if error:
            raise serializers.ValidationError(error)
        return value

    def validate(self, attrs: dict) -> dict:
        # The same validation the admin form runs: field validators, the model's clean(), and
        # the one settings validator (strategies.validation) with the same market checks.
        instance = self.instance
        if instance is None:
            raise serializers.ValidationError("strategies are created in the admin")
        probe = Strategy.objects.get(pk=instance.pk)
        for key, value in attrs.items():
            if key != "passphrase":
                setattr(probe, key, value)
        try:
            probe.full_clean(exclude=["passphrase_hash"], validate_unique=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(serializers.as_serializer_error(exc)) from exc
        errors = strategy_settings_errors(probe, market_errors=market_errors)
        if errors:
            raise serializers.ValidationError({field: [message] for field, message in errors.items()})
        return attrs

    def update(self, instance: Strategy, validated_data: dict) -> Strategy:
        passphrase = validated_data.pop("passphrase", None)
        previous_account_id = instance.account_id
        for key, value in validated_data.items():
            setattr(instance, key, value)
        if passphrase is not None:
            instance.set_passphrase(passphrase)
        instance.save()
        subscriptions_sync(strategy=instance, previous_account_id=previous_account_id)
        return instance


class GlobalSwitchSerializer(serializers.ModelSerializer):
    class Meta:
        model = TradingControl
        fields = ["halted", "halted_at", "halted_by", "halt_reason"]
        read_only_fields = fields


class SwitchRequestSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class SwitchResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when the switch was already in that position.")
    halted = serializers.BooleanField()


class TestSignalRequestSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ACTIONS, default="buy")
    ticker = serializers.RegexField(r"^[A-Za-z0-9_.!:/\-]{1,64}$", default="BTCUSDT.P", max_length=64)
    price = serializers.DecimalField(
        max_digits=30, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
    )
    volume = serializers.DecimalField(
        max_digits=30, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
    )


class SizingPreviewRequestSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ACTIONS, default="buy")
    ticker = serializers.RegexField(r"^[A-Za-z0-9_.!:/\-]{1,64}$", default="BTCUSDT.P", max_length=64)
    price = serializers.DecimalField(
        max_digits=30,
        decimal_places=12,
        required=False,
        allow_null=True,
        min_value=Decimal("0.000000000001"),
        help_text="The alert's price; default: the strategy's last alert price.",
    )
    volume = serializers.DecimalField(
        max_digits=30,
        decimal_places=12,
        required=False,
        allow_null=True,
        min_value=Decimal("0.000000000001"),
        help_text="The alert's volume (used by signal sizing); default 0.01.",
    )


class HealthSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    checks = serializers.DictField()
    last_signal_age_s = serializers.FloatField(allow_null=True, required=False)
    stuck_signals = serializers.IntegerField(required=False)
