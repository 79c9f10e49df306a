"""Accounts, orders, fills and positions in the console. Credentials are write-only: the
form takes new values and encrypts them; nothing ever renders them back."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from strategies.admin_site import killswitch_url
from strategies.admin_tools import CsvExportMixin, FastListMixin, choices_filter, plain_number, status_badge
from strategies.breakers import BREAKER_FIELDS

from . import pnl
from . import services as execution_services
from .models import ExchangeAccount, Fill, Order, PaperBalance, Position

CREDENTIAL_FIELDS = ("api_key", "api_secret", "api_password")


def _secret_field(label: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only: stored encrypted and never shown again. Leave empty to keep the current value.",
    )


class ExchangeAccountForm(forms.ModelForm):
    api_key = _secret_field("API key")
    api_secret = _secret_field("API secret")
    api_password = _secret_field("API passphrase (OKX, Bitget)")
    clear_credentials = forms.BooleanField(required=False, label="Remove the stored credentials")
    base_url = forms.URLField(
        required=False,
        assume_scheme="http",
        help_text=ExchangeAccount._meta.get_field("base_url").help_text,
    )

    class Meta:
        model = ExchangeAccount
        exclude = (
            "api_key_enc",
            "api_secret_enc",
            "api_password_enc",
            "halted",
            "halted_at",
            "halted_by",
            "halt_reason",
        )

    def clean(self):
        data = super().clean()
        mode = data.get("mode")
        if data.get("clear_credentials") and any(data.get(f) for f in CREDENTIAL_FIELDS):
            self.add_error("clear_credentials", "Either enter new credentials or remove them, not both.")
        if mode in (ExchangeAccount.Mode.TESTNET, ExchangeAccount.Mode.LIVE) and not data.get("clear_credentials"):
            has_key = bool(data.get("api_key")) or bool(self.instance.api_key_enc)
            has_secret = bool(data.get("api_secret")) or bool(self.instance.api_secret_enc)
            if not (has_key and has_secret):
                self.add_error("api_key", "A testnet or live account needs an API key and secret.")
        if data.get("exchange") in (ExchangeAccount.Exchange.OKX, ExchangeAccount.Exchange.BITGET):
            if mode != ExchangeAccount.Mode.PAPER and not (data.get("api_password") or self.instance.api_password_enc):
                self.add_error("api_password", "OKX and Bitget keys come with an API passphrase; enter it too.")
        return data


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    form = ExchangeAccountForm
    list_display = ("label", "exchange", "mode", "market_type", "credentials_state", "kill_switch")
    list_filter = ("exchange", "mode", "halted")
    search_fields = ("label",)
    actions = ("test_connection", "engage_kill_switch", "release_kill_switch")
    readonly_fields = ("credentials_state", "kill_switch", "created_at", "updated_at")
    fieldsets = (
        (
            None,
            {"fields": ("label", "exchange", "mode", "market_type", "position_mode", "margin_mode", "kill_switch")},
        ),
        (
            "Credentials",
            {"fields": ("credentials_state", "api_key", "api_secret", "api_password", "clear_credentials", "base_url")},
        ),
        ("Limits", {"fields": ("max_orders_per_second",)}),
        (
            "Breakers",
            {
                "fields": BREAKER_FIELDS,
                "description": "Each engages this account's kill switch (every strategy on it) by itself when"
                " crossed, until you resume it. Empty: off.",
            },
        ),
        (
            "Paper trading",
            {"fields": ("paper_fee_bps", "paper_slippage_bps", "paper_quote_currency", "paper_starting_balance")},
        ),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="Credentials")
    def credentials_state(self, obj):
        if obj is None or obj.pk is None:
            return "–"
        parts = [
            name
            for name, value in (
                ("key", obj.api_key_enc),
                ("secret", obj.api_secret_enc),
                ("passphrase", obj.api_password_enc),
            )
            if value
        ]
        return ("stored encrypted: " + ", ".join(parts)) if parts else "none stored"

    @admin.display(description="Kill switch")
    def kill_switch(self, obj):
        if obj is None or obj.pk is None:
            return "–"
        if obj.halted:
            return format_html(
                '<strong class="tv-bad-text">ENGAGED</strong> by {}{} <a class="button tv-btn-resume" href="{}">Resume…</a>',
                obj.halted_by or "?",
                f" — “{obj.halt_reason}”" if obj.halt_reason else "",
                killswitch_url("account", "release", str(obj.pk)),
            )
        return format_html(
            'Off <a class="button tv-btn-halt" href="{}">Halt…</a>', killswitch_url("account", "engage", str(obj.pk))
        )

    def save_model(self, request, obj, form, change):
        if form.cleaned_data.get("clear_credentials"):
            obj.api_key_enc = obj.api_secret_enc = obj.api_password_enc = ""
        else:
            obj.set_credentials(**{f: form.cleaned_data.get(f) or None for f in CREDENTIAL_FIELDS})
        super().save_model(request, obj, form, change)

    def get_urls(self):
        return [
            path(
                "<int:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="execution_exchangeaccount_test_connection",
            )
        ] + super().get_urls()

    def test_connection_view(self, request, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        account = get_object_or_404(ExchangeAccount, pk=object_id)
        self._test(request, [account])
        return HttpResponseRedirect(reverse("admin:execution_exchangeaccount_change", args=[account.pk]))

    def _test(self, request, accounts):
        for account in accounts:
            try:
                result = execution_services.account_test_connection(account=account)
            except Exception as exc:  # shown to the operator; never the credentials
                self.message_user(request, f"{account.label}: test failed ({type(exc).__name__}).", messages.ERROR)
                continue
            level = messages.SUCCESS if result.get("ok") else messages.ERROR
            verdict = "connection OK" if result.get("ok") else "connection FAILED"
            self.message_user(request, f"{account.label}: {verdict}. {result.get('detail', '')}".strip(), level)

    @admin.action(description="Test connection", permissions=["change"])
    def test_connection(self, request, queryset):
        self._test(request, list(queryset[:20]))

    @admin.action(description="Engage kill switch…", permissions=["change"])
    def engage_kill_switch(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(killswitch_url("account", "engage", ids, request.get_full_path()))

    @admin.action(description="Release kill switch…", permissions=["change"])
    def release_kill_switch(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(killswitch_url("account", "release", ids, request.get_full_path()))


class FillInline(admin.TabularInline):
    model = Fill
    extra = 0
    can_delete = False
    fields = ("trade_id", "qty", "price", "fee", "fee_currency", "filled_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _signal_link(signal_id):
    return format_html('<a href="{}">#{}</a>', reverse("admin:signals_signal_change", args=[signal_id]), signal_id)


def _strategy_link(strategy):
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:strategies_strategy_change", args=[strategy.pk]), strategy.strategy_id
    )


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(CsvExportMixin, FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    csv_columns = (
        ("id", "id"),
        ("created_at", "created_at"),
        ("strategy", "strategy.strategy_id"),
        ("signal_id", "signal_id"),
        ("account", "account.label"),
        ("symbol", "symbol"),
        ("side", "side"),
        ("purpose", "purpose"),
        ("order_type", "order_type"),
        ("requested_qty", "requested_qty"),
        ("filled_qty", "filled_qty"),
        ("avg_price", "avg_price"),
        ("signal_price", "signal_price"),
        ("slippage_bps", "slippage_bps"),
        ("fee", "fee"),
        ("fee_currency", "fee_currency"),
        ("status", "status"),
        ("client_order_id", "client_order_id"),
        ("exchange_order_id", "exchange_order_id"),
        ("closed_at", "closed_at"),
    )
    # Status and money first: visible at 1366 px with the filters beside.
    list_display = (
        "id",
        "created_at",
        "status_col",
        "strategy_col",
        "symbol",
        "side",
        "purpose",
        "protection_col",
        "qty_col",
        "avg_price",
        "slippage_bps",
        "fee_col",
        "signal_col",
        "account",
    )
    list_display_links = ("id", "created_at")
    list_filter = (
        "status",
        "strategy",
        "account",
        choices_filter("side", "side", list(Order.Side.choices)),
        "purpose",
        "protection",
        ("created_at", admin.DateFieldListFilter),
    )
    list_select_related = ("strategy", "account")
    list_defer = ("replies", "reason")
    search_fields = ("=client_order_id",)
    search_help_text = "Order id, client order id, exchange order id or signal id (#123)."
    inlines = (FillInline,)
    readonly_fields = ("strategy_col", "signal_col", "replies_pre")
    exclude = ("replies",)

    def get_search_results(self, request, queryset, search_term):
        from django.db.models import Q

        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(client_order_id=term) | Q(exchange_order_id=term) | Q(symbol=term.upper())
        if term.startswith("#") and term[1:].isdigit():
            q = Q(signal_id=int(term[1:]))
        elif term.isdigit():
            q |= Q(pk=int(term))
        return queryset.filter(q), False

    @admin.display(description="Strategy", ordering="strategy__strategy_id")
    def strategy_col(self, obj):
        return _strategy_link(obj.strategy)

    @admin.display(description="Signal", ordering="signal_id")
    def signal_col(self, obj):
        return _signal_link(obj.signal_id)

    @admin.display(description="Filled / requested")
    def qty_col(self, obj):
        return f"{plain_number(obj.filled_qty)} / {plain_number(obj.requested_qty)}"

    @admin.display(description="Protection", ordering="protection")
    def protection_col(self, obj):
        if not obj.protection:
            return "–"
        return f"{obj.get_protection_display()} {obj.level}".strip()

    @admin.display(description="Fee")
    def fee_col(self, obj):
        return f"{obj.fee.normalize():f} {obj.fee_currency}".strip() if obj.fee else "0"

    @admin.display(description="Status", ordering="status")
    def status_col(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Exchange replies (redacted)")
    def replies_pre(self, obj):
        return format_html('<pre class="tv-code">{}</pre>', json.dumps(obj.replies, indent=2, default=str))


@admin.register(Fill)
class FillAdmin(CsvExportMixin, FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    csv_columns = (
        ("id", "id"),
        ("filled_at", "filled_at"),
        ("strategy", "order.strategy.strategy_id"),
        ("signal_id", "order.signal_id"),
        ("account", "order.account.label"),
        ("symbol", "order.symbol"),
        ("side", "order.side"),
        ("qty", "qty"),
        ("price", "price"),
        ("fee", "fee"),
        ("fee_currency", "fee_currency"),
        ("realised_pnl", "realised_pnl"),
        ("fee_in_quote", "fee_in_quote"),
        ("client_order_id", "order.client_order_id"),
        ("trade_id", "trade_id"),
    )

    def csv_objects(self, request, queryset):
        # Each fill's realised P&L needs every earlier fill of its book, whatever the filter.
        rows = pnl.all_fills_for_replay()  # None past the limit: the P&L columns stay empty
        trades = {t.fill_id: t for t in pnl.replay(rows or [])}
        for fill in queryset.select_related("order__account", "order__strategy").iterator(chunk_size=2000):
            trade = trades.get(fill.pk)
            fill.realised_pnl = trade.realized if trade else None
            fill.fee_in_quote = trade.fee if trade else None
            yield fill

    list_display = (
        "id",
        "filled_at",
        "order_col",
        "strategy_col",
        "signal_col",
        "symbol",
        "side",
        "qty",
        "price",
        "fee",
        "fee_currency",
    )
    list_filter = ("order__strategy", ("filled_at", admin.DateFieldListFilter))
    list_select_related = ("order", "order__strategy")
    search_fields = ("=trade_id",)

    @admin.display(description="Order", ordering="order_id")
    def order_col(self, obj):
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:execution_order_change", args=[obj.order_id]),
            obj.order.client_order_id,
        )

    @admin.display(description="Strategy")
    def strategy_col(self, obj):
        return _strategy_link(obj.order.strategy)

    @admin.display(description="Signal")
    def signal_col(self, obj):
        return _signal_link(obj.order.signal_id)

    @admin.display(description="Symbol")
    def symbol(self, obj):
        return obj.order.symbol

    @admin.display(description="Side")
    def side(self, obj):
        return obj.order.side


@admin.register(Position)
class PositionAdmin(CsvExportMixin, ReadOnlyMixin, admin.ModelAdmin):
    # P&L first after the market: visible at 1366 px with the filters beside.
    list_display = (
        "symbol",
        "owner",
        "qty",
        "avg_price",
        "mark_col",
        "unrealised_col",
        "net_pnl",
        "realised_col",
        "fees_col",
        "protection",
        "account",
        "updated_at",
    )
    list_filter = ("account", "strategy")
    list_select_related = ("account", "strategy")
    search_fields = ("=symbol",)
    csv_columns = (
        ("account", "account.label"),
        ("strategy", lambda p: p.strategy.strategy_id if p.strategy_id else "account total"),
        ("symbol", "symbol"),
        ("qty", "qty"),
        ("avg_price", "avg_price"),
        ("last_price", lambda p: pnl.position_mark(p)[0]),
        ("last_price_at", lambda p: pnl.position_mark(p)[1]),
        ("unrealised_pnl", pnl.unrealized_pnl),
        ("realised_pnl", "realized_pnl"),
        ("fees_paid", "fees_paid"),
        ("net_realised_pnl", "net_realized_pnl"),
        ("updated_at", "updated_at"),
    )

    def get_queryset(self, request):
        return pnl.with_marks(super().get_queryset(request))

    @admin.display(description="Strategy")
    def owner(self, obj):
        return _strategy_link(obj.strategy) if obj.strategy_id else "account total"

    @admin.display(description="Last price")
    def mark_col(self, obj):
        price, at = pnl.position_mark(obj)
        if price is None:
            return "–"
        return format_html(
            '<span title="{}">{}</span>', f"as of {timezone.localtime(at):%Y-%m-%d %H:%M:%S %Z}", plain_number(price)
        )

    @admin.display(description="Unrealised P&L")
    def unrealised_col(self, obj):
        value = pnl.unrealized_pnl(obj)
        if value is None:
            return "–"
        return format_html('<span class="{}">{}</span>', "tv-bad-text" if value < 0 else "tv-ok-text", f"{value:+,.2f}")

    @admin.display(description="Net realised P&L", ordering="realized_pnl")
    def net_pnl(self, obj):
        return plain_number(obj.net_realized_pnl)

    @admin.display(description="Realised P&L (before fees)", ordering="realized_pnl")
    def realised_col(self, obj):
        return plain_number(obj.realized_pnl)

    @admin.display(description="Fees paid", ordering="fees_paid")
    def fees_col(self, obj):
        return plain_number(obj.fees_paid)

    @admin.display(description="Stop / take / trailing")
    def protection(self, obj):
        from .selectors import position_protection

        guards = position_protection(obj)
        if not guards:
            return "–" if obj.strategy_id is None or not obj.qty else "none"
        return " · ".join(
            f"{Order.Protection(g['kind']).label} {g['level']}" + ("" if g["status"] == "open" else f" ({g['status']})")
            for g in guards
        )


@admin.register(PaperBalance)
class PaperBalanceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("account", "currency", "total")
    list_select_related = ("account",)
