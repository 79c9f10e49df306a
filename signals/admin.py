"""Signals in the console: "what happened to my alert?" answered on one page (timeline,
reason in words, orders and fills), lists that stay fast on years of history, and replay
on paper."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from execution.models import Fill, Order
from strategies.admin_tools import CsvExportMixin, FastListMixin, choices_filter, ms_between, plain_number, status_badge
from strategies.models import ACTIONS

from .models import Signal, WebhookRejection

EXCHANGES = [("BYBIT", "Bybit"), ("BINANCE", "Binance"), ("BITGET", "Bitget"), ("OKX", "OKX")]

TIMELINE = (
    ("fired_at", "Fired (TradingView)"),
    ("received_at", "Received"),
    ("committed_at", "Committed"),
    ("enqueued_at", "Re-queued"),
    ("started_at", "Execution started"),
    ("sent_at", "Order sent"),
    ("acked_at", "Acknowledged"),
    ("first_fill_at", "First fill"),
    ("filled_at", "Filled"),
    ("finished_at", "Finished"),
)


plain = plain_number  # a Decimal as people write it: 65000, 0.01


def fired_to_received(fired_at, received_at) -> str:
    """TradingView's {{timenow}} is cut to the whole second, so the alert really fired up to
    a second after the time it carries: the delivery took between (received − fired − 1 s)
    and (received − fired). Shown as that range, never as a latency the rounding made up."""
    if fired_at.microsecond:
        return f"+{ms_between(fired_at, received_at)}"
    upper = (received_at - fired_at).total_seconds() * 1000
    lower = max(upper - 1000, 0)
    if upper < 0:
        return "clock skew"
    if upper < 1000:
        return f"≤ {upper:.0f} ms"
    return f"+{lower / 1000:.1f}–{upper / 1000:.1f} s"


CLIENT_ORDER_ID = re.compile(r"^[A-Za-z0-9_\-]{8,32}$")


def explain_reason(signal: Signal) -> tuple[str, str]:
    """The reason for a rejection, block or failure, and what the trader can do about it."""
    reason = signal.reason or ""
    status = signal.status
    if status == Signal.Status.BLOCKED:
        return reason, (
            "It was recorded but not traded because trading was stopped for it when it arrived "
            "(or when a worker picked it up). It is not replayed when trading resumes; use “Replay on "
            "paper” to see what it would do now."
        )
    if reason.startswith("not JSON"):
        return reason, (
            "TradingView sent a message that is not valid JSON. Usual causes: a trailing comma, a missing "
            "quote, or a placeholder such as {{strategy.order.contracts}} that came out empty. Copy the alert "
            "template from the strategy page again."
        )
    if signal.errors:
        fields = "; ".join(f"{k}: {v}" for k, v in signal.errors.items())
        hint = "Fix the alert message in TradingView."
        if "{{" in json.dumps(signal.errors) or "placeholder" in fields:
            hint += (
                " A {{…}} placeholder arrived unreplaced: it only works in an alert created on a strategy or "
                "indicator that provides it."
            )
        if "strategy_id" in signal.errors:
            hint += " The strategy_id must match a strategy configured here (case-sensitive)."
        return f"The alert was refused: {fields}", hint
    if "stale alert" in reason:
        return reason, (
            "TradingView delivered it too late for an entry (limit: the strategy's maximum signal age, or "
            "the server's SIGNAL_MAX_AGE_SECONDS when the strategy sets none). Exits are still executed."
        )
    if "in the future" in reason:
        return reason, (
            "The alert says it was fired later than now. Check this server's clock (NTP) and that fired_at "
            "is {{timenow}} and bar_time is {{time}} in the alert message. Exits are still executed."
        )
    if "is not allowed for this strategy" in reason:
        return reason, "Change “Allowed actions” on the strategy if this action should trade."
    if status == Signal.Status.FAILED:
        return reason or "Execution failed.", "The orders below carry the exchange's own reason."
    return reason, ""


class OrderInline(admin.TabularInline):
    model = Order
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "order_link",
        "leg",
        "purpose",
        "protection_col",
        "client_order_id",
        "symbol",
        "side",
        "order_type",
        "requested_qty",
        "filled_qty",
        "avg_price",
        "slippage_bps",
        "fee",
        "status_badge",
        "reason",
    )
    readonly_fields = fields
    verbose_name_plural = "Orders"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account").defer("replies")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Protection")
    def protection_col(self, obj):
        return f"{obj.get_protection_display()} {obj.level}".strip() if obj.protection else "–"

    @admin.display(description="Order")
    def order_link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:execution_order_change", args=[obj.pk]), obj.pk)

    @admin.display(description="Status")
    def status_badge(self, obj):
        return status_badge(obj.status, obj.get_status_display())


@admin.register(Signal)
class SignalAdmin(CsvExportMixin, FastListMixin, admin.ModelAdmin):
    csv_columns = (
        ("id", "id"),
        ("received_at", "received_at"),
        ("strategy", "strategy_key"),
        ("status", "status"),
        ("action", "action"),
        ("ticker", "ticker"),
        ("exchange", "exchange"),
        ("price", "price"),
        ("volume", "volume"),
        ("timeframe", "timeframe"),
        ("bar_time", "bar_time"),
        ("fired_at", "fired_at"),
        ("sent_at", "sent_at"),
        ("filled_at", "filled_at"),
        ("tv_order_id", "tv_order_id"),
        ("test", "is_test"),
        ("reason", "reason"),
    )
    # Status first after the time: it must be on screen at 1366 px with the filters beside.
    list_display = (
        "id",
        "received_at",
        "status_badge",
        "strategy_link",
        "action",
        "ticker",
        "price",
        "sent_latency",
        "reason_short",
        "exchange",
    )
    list_display_links = ("id", "received_at")
    list_filter = (
        "strategy",
        "status",
        choices_filter("action", "action", [(a, a) for a in ACTIONS]),
        choices_filter("exchange", "exchange", EXCHANGES),
        ("received_at", admin.DateFieldListFilter),
        "is_test",
    )
    list_select_related = ("strategy",)
    list_defer = ("payload", "raw_body", "errors", "comment", "remote_addr")
    search_fields = ("ticker",)  # replaced by get_search_results; keeps the search box
    search_help_text = "Signal id, ticker (BTCUSDT.P), TradingView order id, or an order's client order id."
    inlines = (OrderInline,)
    actions = ("replay_on_paper",)
    fieldsets = (
        (None, {"fields": ("summary", "reason_explained", "timeline", "accounts_table")}),
        (
            "Alert",
            {
                "fields": (
                    ("strategy", "strategy_key", "is_test"),
                    ("action", "ticker", "exchange", "timeframe"),
                    ("price", "volume", "bar_time"),
                    ("tv_order_id", "comment"),
                    ("market_position", "market_position_size", "position_size", "prev_market_position"),
                )
            },
        ),
        (
            "Delivery",
            {
                "fields": (
                    ("content_type", "remote_addr"),
                    ("duplicate_count", "last_duplicate_at"),
                    ("enqueue_count", "attempts", "lease_until", "lease_owner"),
                    "raw_body_pre",
                    "payload_pre",
                )
            },
        ),
        ("Fills and P&L", {"fields": ("fills_table",)}),
    )

    def get_list_filter(self, request):
        return (StuckFilter, *self.list_filter)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Signal._meta.fields] + [
            "summary",
            "reason_explained",
            "timeline",
            "accounts_table",
            "raw_body_pre",
            "payload_pre",
            "fills_table",
        ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        """Exact, indexed lookups only: LIKE '%…%' over a million rows is a full scan."""
        term = search_term.strip()
        if not term:
            return queryset, False
        q = Q(ticker=term.upper()) | Q(ticker=term.upper().split(":")[-1]) | Q(tv_order_id=term)
        if term.lstrip("#").isdigit():
            q |= Q(pk=int(term.lstrip("#")))
        if CLIENT_ORDER_ID.match(term):
            q |= Q(pk__in=Order.objects.filter(client_order_id=term).values("signal_id"))
        return queryset.filter(q), False

    # --- list columns ---

    @admin.display(description="Strategy", ordering="strategy__strategy_id")
    def strategy_link(self, obj):
        if not obj.strategy_id:
            return obj.strategy_key or "–"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:strategies_strategy_change", args=[obj.strategy_id]),
            obj.strategy.strategy_id,
        )

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Reason")
    def reason_short(self, obj):
        return (obj.reason[:80] + "…") if len(obj.reason) > 80 else obj.reason

    @admin.display(description="Alert → sent")
    def sent_latency(self, obj):
        return ms_between(obj.received_at, obj.sent_at)

    # --- detail ---

    @admin.display(description="Outcome")
    def summary(self, obj):
        return format_html(
            "{} <strong>{} {}</strong> {} on {} for <strong>{}</strong>{}",
            status_badge(obj.status, obj.get_status_display()),
            obj.action or "?",
            obj.ticker or "?",
            f"@ {plain(obj.price)}" if obj.price is not None else "",
            obj.exchange or "?",
            obj.strategy.strategy_id if obj.strategy_id else (obj.strategy_key or "no strategy"),
            " (test signal, paper)" if obj.is_test else "",
        )

    @admin.display(description="Why")
    def reason_explained(self, obj):
        text, hint = explain_reason(obj)
        if not text and not hint:
            return "–"
        return format_html('<div class="tv-reason">{}<span class="tv-reason-hint">{}</span></div>', text, hint)

    @admin.display(description="Timeline")
    def timeline(self, obj):
        rows = []
        previous = None
        for field, label in TIMELINE:
            at = getattr(obj, field)
            if at is None:
                if field in ("enqueued_at", "fired_at"):
                    continue
                rows.append((label, "not yet", "", "tv-missing"))
                continue
            delta = f"+{ms_between(previous, at)}" if previous else ""
            if field == "received_at" and obj.fired_at is not None:
                delta = fired_to_received(obj.fired_at, at)
            rows.append((label, timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], delta, ""))
            previous = at
        total = ms_between(obj.received_at, obj.filled_at or obj.sent_at or obj.finished_at)
        items = format_html_join(
            "",
            '<li class="{}"><span class="tv-step">{}</span><span class="tv-delta">{}</span><span>{}</span></li>',
            ((cls, label, delta, when) for label, when, delta, cls in rows),
        )
        return format_html(
            '<ol class="tv-timeline" id="tv-timeline">{}</ol>{}<p>Received → {}: <strong>{}</strong></p>{}',
            items,
            mark_safe(
                '<p class="help" id="tv-fired-note">TradingView\'s fired time ({{timenow}}) is cut to the '
                "whole second, so fired → received is shown as the range the delivery can have taken.</p>"
            )
            if obj.fired_at is not None and not obj.fired_at.microsecond
            else "",
            "filled" if obj.filled_at else "sent",
            total,
            self._protective_legs(obj),
        )

    def _protective_legs(self, obj):
        """The stop-loss / take-profit / trailing stop placed for the signal's entry: when
        each went live after the fill, and how it ended (closed by stop-loss, cancelled…)."""
        legs = list(obj.orders.exclude(protection="").select_related("protects").order_by("leg"))
        if not legs:
            return ""
        rows = []
        for leg in legs:
            fill = leg.protects.last_fill_at if leg.protects_id else None
            live = f"live +{ms_between(fill, leg.acked_at)} after the fill" if fill and leg.acked_at else ""
            outcome = leg.reason or leg.get_status_display().lower()
            rows.append((f"{leg.get_protection_display()} {leg.level}", f"{leg.requested_qty.normalize():f}",
                         live, outcome))  # fmt: skip
        return format_html(
            '<h4>Protective orders</h4><ol class="tv-timeline" id="tv-protection">{}</ol>',
            format_html_join(
                "",
                '<li><span class="tv-step">{}</span><span class="tv-delta">{}</span><span>{} {}</span></li>',
                rows,
            ),
        )

    @admin.display(description="Accounts")
    def accounts_table(self, obj):
        """An alert fanned out to several accounts: each account's run, its legs and outcome.
        A run on one account: the alert it belongs to."""
        if obj.parent_id:
            sub = obj.subscription
            return format_html(
                'Run on account <strong>{}</strong> of alert <a href="{}">#{}</a>.',
                sub.account.label if sub else "?",
                reverse("admin:signals_signal_change", args=[obj.parent_id]),
                obj.parent_id,
            )
        children = list(obj.children.select_related("subscription__account").order_by("id"))
        if not children:
            return "This strategy's own account (see the orders below)."
        orders: dict[int, list[Order]] = {}
        for order in Order.objects.filter(signal__parent=obj).defer("replies").order_by("signal_id", "leg"):
            orders.setdefault(order.signal_id, []).append(order)
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:signals_signal_change", args=[child.pk]),
                    child.pk,
                    child.subscription.account.label if child.subscription_id else "?",
                    status_badge(child.status, child.get_status_display()),
                    "; ".join(
                        f"{o.side} {plain(o.requested_qty)} {o.symbol} → {o.get_status_display().lower()}"
                        + (f" {plain(o.filled_qty)} @ {plain(o.avg_price)}" if o.filled_qty else "")
                        for o in orders.get(child.pk, [])
                    )
                    or "–",
                    ms_between(child.received_at, child.sent_at),
                    child.reason[:120],
                )
                for child in children
            ),
        )
        return format_html(
            '<table class="tv-mini" id="tv-accounts"><thead><tr><th>Run</th><th>Account</th><th>Outcome</th>'
            "<th>Legs</th><th>Alert → sent</th><th>Reason</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="Body as received (passphrase redacted)")
    def raw_body_pre(self, obj):
        return format_html('<pre class="tv-code">{}</pre>', obj.raw_body or "–")

    @admin.display(description="Parsed payload")
    def payload_pre(self, obj):
        if obj.payload is None:
            return "–"
        return format_html('<pre class="tv-code">{}</pre>', json.dumps(obj.payload, indent=2, sort_keys=True))

    @admin.display(description="Fills and P&L")
    def fills_table(self, obj):
        from execution import pnl

        fills = list(Fill.objects.filter(order__signal=obj).select_related("order").order_by("id")[:200])
        if not fills:
            return "No fills."
        trades = pnl.signal_trades(signal=obj)
        by_fill = {t.fill_id: t for t in trades or []}

        def money(value):
            return "–" if value is None else f"{value:+,.2f}" if value else "0.00"

        rows = format_html_join(
            "",
            "<tr><td>#{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            '<td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>',
            (
                (
                    f.order_id,
                    f.trade_id,
                    f.order.side,
                    plain(f.qty),
                    plain(f.price),
                    f"{plain(f.fee)} {f.fee_currency}".strip(),
                    money(by_fill[f.pk].realized if f.pk in by_fill else None),
                    money(by_fill[f.pk].net if f.pk in by_fill else None),
                    timezone.localtime(f.filled_at).strftime("%H:%M:%S.%f")[:-3]
                    + timezone.localtime(f.filled_at).strftime(" %Z"),
                )
                for f in fills
            ),
        )
        if trades is None:
            total = "P&L not computed: this strategy has too many fills to replay here (see Positions)."
        else:
            realised = sum((t.realized for t in trades), pnl.ZERO)
            fees = sum((t.fee for t in trades), pnl.ZERO)
            total = format_html(
                'This signal: realised P&amp;L <strong id="tv-signal-realised">{}</strong>, fees '
                '<strong id="tv-signal-fees">{}</strong>, net <strong id="tv-signal-net">{}</strong> '
                "(quote currency; realised counts only what a fill closed).",
                money(realised),
                plain(fees),
                money(realised - fees),
            )
        return format_html(
            '<table class="tv-mini" id="tv-fills"><thead><tr><th>Order</th><th>Trade</th><th>Side</th><th>Qty</th>'
            "<th>Price</th><th>Fee</th><th>Realised P&amp;L</th><th>Net of fee</th><th>At</th></tr></thead>"
            "<tbody>{}</tbody></table><p>{}</p>",
            rows,
            total,
        )

    # --- replay on paper ---

    def get_urls(self):
        return [
            path(
                "<int:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name="signals_signal_replay",
            )
        ] + super().get_urls()

    def replay_view(self, request: HttpRequest, object_id: int):
        from execution import services as execution_services

        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        signal = get_object_or_404(Signal.objects.select_related("strategy"), pk=object_id)
        result, error = None, ""
        if request.method == "POST":
            try:
                result = execution_services.signal_replay_on_paper(signal=signal, actor=request.user)
            except Exception as exc:  # shown to the operator; replay places nothing
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        context = {
            **self.admin_site.each_context(request),
            "title": f"Replay signal #{signal.pk} on paper",
            "signal": signal,
            "result": result,
            "result_json": json.dumps(result, indent=2, default=str) if result is not None else "",
            "error": error,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/signals/signal/replay.html", context)

    @admin.action(description="Replay on paper (what would it do now?)", permissions=["view"])
    def replay_on_paper(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(request, "Select exactly one signal to replay.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:signals_signal_replay", args=[ids[0]]))


# Why a request was refused before it became a signal (WebhookRejection.reason), in words.
REFUSAL_REASONS = {
    "bad_passphrase": "wrong passphrase",
    "not_json": "not JSON (never stored: it cannot carry a checked passphrase)",
    "ip_not_allowed": "address not allowed",
    "body_too_large": "body too large",
}


class StuckFilter(admin.SimpleListFilter):
    title = "needs attention"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [("yes", "Waiting more than 60 s")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            now = timezone.now()
            return queryset.filter(
                status__in=Signal.PENDING_STATUSES,
                received_at__lt=now - timedelta(seconds=60),
                received_at__gte=now - timedelta(days=7),
            )
        return queryset


@admin.register(WebhookRejection)
class WebhookRejectionAdmin(FastListMixin, admin.ModelAdmin):
    """Requests refused before they became signals (wrong passphrase, address not allowed,
    oversized body, not JSON), counted per day and source: "N requests refused for reason X"."""

    list_display = (
        "day",
        "source",
        "reason_shown",
        "count",
        "last_seen",
        "last_strategy_key",
        "last_detail",
        "last_user_agent",
    )
    list_filter = (
        choices_filter("reason", "reason", list(REFUSAL_REASONS.items())),
        ("day", admin.DateFieldListFilter),
    )
    search_fields = ("=source", "=last_strategy_key")
    ordering = ("-day", "-count")

    @admin.display(description="Reason", ordering="reason")
    def reason_shown(self, obj):
        return REFUSAL_REASONS.get(obj.reason, obj.reason)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # The trace of refused requests is evidence; it is bounded by design, not pruned by hand.
        return False

    def has_change_permission(self, request, obj=None):
        return False
