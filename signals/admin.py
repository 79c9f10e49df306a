"""Admin, first cut: every signal inspectable (status, reason, timings, the redacted raw body)
and the counters of refused webhook requests. Both are read-only records."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html

from .models import Signal, WebhookRejection


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records are written by the webhook, never by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _ms(start, end) -> str:
    if start is None or end is None:
        return "–"
    return f"{(end - start).total_seconds() * 1000:.1f} ms"


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "received_at",
        "strategy_key",
        "action",
        "ticker",
        "exchange",
        "status",
        "short_reason",
        "commit_ms",
        "duplicate_count",
    )
    list_filter = ("status", "action", "exchange", "strategy")
    search_fields = ("=id", "strategy_key", "ticker", "tv_order_id", "reason")
    list_select_related = ("strategy",)
    date_hierarchy = "received_at"
    show_full_result_count = False  # no COUNT(*) over a million rows on every page
    list_per_page = 100
    fieldsets = (
        (None, {"fields": ("status", "reason", "errors_pretty", "strategy", "strategy_key")}),
        (
            "Alert",
            {
                "fields": (
                    ("action", "ticker", "exchange"),
                    ("price", "volume", "timeframe"),
                    ("bar_time", "tv_order_id", "comment"),
                    ("market_position", "market_position_size", "prev_market_position", "position_size"),
                )
            },
        ),
        (
            "Latency chain",
            {
                "fields": (
                    ("fired_at", "received_at", "committed_at", "commit_ms"),
                    ("enqueued_at", "enqueue_count", "started_at", "attempts"),
                    ("sent_at", "acked_at", "first_fill_at", "filled_at", "finished_at"),
                )
            },
        ),
        ("Duplicates", {"fields": (("dedup_key", "duplicate_count", "last_duplicate_at"),)}),
        (
            "As received (passphrase redacted)",
            {"fields": ("content_type", "remote_addr", "raw_body_pre", "payload_pretty")},
        ),
    )
    readonly_fields = ("errors_pretty", "commit_ms", "raw_body_pre", "payload_pretty")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        match = getattr(request, "resolver_match", None)
        if match and match.url_name and match.url_name.endswith("changelist"):
            queryset = queryset.defer("payload", "raw_body", "errors")  # heavy, not shown in the list
        return queryset

    @admin.display(description="reason")
    def short_reason(self, obj: Signal) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"

    @admin.display(description="received → committed")
    def commit_ms(self, obj: Signal) -> str:
        return _ms(obj.received_at, obj.committed_at)

    @admin.display(description="raw body")
    def raw_body_pre(self, obj: Signal):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', obj.raw_body or "")

    @admin.display(description="parsed payload")
    def payload_pretty(self, obj: Signal):
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True) if obj.payload else "")

    @admin.display(description="errors")
    def errors_pretty(self, obj: Signal):
        if not obj.errors:
            return "–"
        return format_html("<pre>{}</pre>", json.dumps(obj.errors, indent=2))


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(ReadOnlyAdmin):
    list_display = ("day", "source", "reason", "count", "first_seen", "last_seen", "last_strategy_key")
    list_filter = ("reason", "day")
    search_fields = ("source", "last_strategy_key")
    show_full_result_count = False
