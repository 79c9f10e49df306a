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
from django.utils.html import format_html

from strategies.admin_site import killswitch_url
from strategies.admin_tools import FastListMixin, choices_filter, status_badge

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
                '<strong class="tv-bad-text">ENGAGED</strong> <a class="button tv-btn-resume" href="{}">Resume…</a>',
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
class OrderAdmin(FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "strategy_col",
        "signal_col",
        "account",
        "symbol",
        "side",
        "purpose",
        "protection_col",
        "requested_qty",
        "filled_qty",
        "avg_price",
        "signal_price",
        "slippage_bps",
        "fee_col",
        "status_col",
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
class FillAdmin(FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
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
class PositionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "account",
        "owner",
        "symbol",
        "qty",
        "avg_price",
        "realized_pnl",
        "fees_paid",
        "net_pnl",
        "protection",
        "updated_at",
    )
    list_filter = ("account", "strategy")
    list_select_related = ("account", "strategy")
    search_fields = ("=symbol",)

    @admin.display(description="Strategy")
    def owner(self, obj):
        return _strategy_link(obj.strategy) if obj.strategy_id else "account total"

    @admin.display(description="Net realized P&L")
    def net_pnl(self, obj):
        return obj.net_realized_pnl

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
