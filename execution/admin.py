"""Admin, minimal registration (a later issue makes it the operator console). Exchange
credentials are never shown: only their presence."""

from __future__ import annotations

from django.contrib import admin

from .models import ExchangeAccount, Fill, Order


@admin.register(ExchangeAccount)
class ExchangeAccountAdmin(admin.ModelAdmin):
    list_display = ("label", "exchange", "mode", "market_type", "halted", "has_credentials")
    list_filter = ("exchange", "mode", "halted")
    exclude = ("api_key_enc", "api_secret_enc", "api_password_enc")
    readonly_fields = ("halted", "halted_at", "halted_by", "halt_reason")

    @admin.display(boolean=True, description="credentials")
    def has_credentials(self, obj: ExchangeAccount) -> bool:
        return bool(obj.api_key_enc)


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(_ReadOnly):
    list_display = ("id", "created_at", "signal", "strategy", "symbol", "side", "requested_qty", "filled_qty", "status")
    list_filter = ("status", "side")
    search_fields = ("client_order_id", "exchange_order_id", "symbol")
    list_select_related = ("signal", "strategy")
    raw_id_fields = ("signal",)
    show_full_result_count = False


@admin.register(Fill)
class FillAdmin(_ReadOnly):
    list_display = ("id", "order", "trade_id", "qty", "price", "fee")
    list_select_related = ("order",)
