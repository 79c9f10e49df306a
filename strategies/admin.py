"""Strategies in the console: every execution setting (validated), the TradingView alert
message and webhook URL to paste, a test signal, the kill switch, and the audit trail of
every change. Also the global switch and the audit log itself."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from signals.alert_message import PASSPHRASE_PLACEHOLDER, STRATEGY_PASSPHRASE_PLACEHOLDER, alert_message
from signals.services import signal_send_test

from .admin_site import killswitch_url
from .admin_tools import FastListMixin
from .breakers import BREAKER_FIELDS
from .forms import SizingPreviewForm, StrategyAdminForm, SubscriptionForm
from .models import AuditEntry, Strategy, Subscription, TradingControl
from .services import audit_record, strategy_audit_changes, strategy_snapshot, subscription_switch
from .subscriptions import subscriptions_sync

SUBSCRIPTION_AUDITED = ("account_id", "enabled", "halted", *Subscription.OVERRIDABLE)

AUDIT_PANEL_ROWS = 50


def alert_templates(strategy: Strategy) -> list[dict[str, str]]:
    """The messages to paste into TradingView's alert dialog (`signals.alert_message`, the
    one source the README, the docs and the installer show too)."""
    passphrase = STRATEGY_PASSPHRASE_PLACEHOLDER if strategy.passphrase_hash else PASSPHRASE_PLACEHOLDER
    volume = f"{strategy.size_value.normalize():f}" if strategy.size_value else "0.01"
    return [
        {
            "id": "tv-alert-strategy",
            "title": "Pine strategy alert (one alert covers every order)",
            "text": alert_message(strategy_id=strategy.strategy_id, passphrase=passphrase, kind="strategy"),
        },
        {
            "id": "tv-alert-indicator",
            "title": 'Indicator / alertcondition alert (one alert per action: change "buy" to '
            "sell, close_long, close_short or close_all)",
            "text": alert_message(
                strategy_id=strategy.strategy_id, passphrase=passphrase, kind="indicator", volume=volume
            ),
        },
    ]


def strategy_pnl_chart(strategy: Strategy):
    """This strategy's running net realised P&L (the dashboard's curve, alone)."""
    from execution import pnl

    from . import charts

    curves = pnl.pnl_curves_cached()["strategy"]
    if curves is None:
        points, empty = [], f"Not drawn: more than {pnl.REPLAY_LIMIT:,} fills (totals: Positions)."
    else:
        points, empty = curves.get(strategy.pk, []), "No fill yet."
    return charts.line_chart(
        title=f"Net realised P&L of {strategy.strategy_id}",
        unit="quote",
        series=[(strategy.strategy_id, "#417690", points)],
        step_lines=True,
        empty_text=empty,
    )


class SubscriptionInline(admin.TabularInline):
    """The accounts the strategy trades on. Empty settings take the strategy's; the strategy's
    own account is always subscribed (strategies.subscriptions)."""

    model = Subscription
    form = SubscriptionForm
    extra = 0
    fields = ("account", "enabled", "halted", "halt_reason", "sizing_mode", "size_value", "max_position", "leverage")
    readonly_fields = ("halt_reason",)
    autocomplete_fields = ()
    verbose_name = "account subscription"
    verbose_name_plural = (
        "Account subscriptions — one alert trades on every enabled one (empty settings: the strategy's)"
    )


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    form = StrategyAdminForm
    inlines = (SubscriptionInline,)
    list_display = ("strategy_id", "name", "state_badge", "account", "sizing", "order_type", "passphrase_state")
    list_filter = ("enabled", "halted", "account")
    list_select_related = ("account",)
    search_fields = ("strategy_id", "name")
    actions = ("engage_kill_switch", "release_kill_switch", "send_test_signal")
    readonly_fields = ("kill_switch_state", "passphrase_state", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("strategy_id", "name", "description", "enabled", "kill_switch_state")}),
        (
            "Webhook authentication",
            {"fields": ("passphrase_state", "new_passphrase", "clear_passphrase")},
        ),
        (
            "Execution",
            {
                "fields": (
                    "account",
                    "symbol_override",
                    ("sizing_mode", "size_value"),
                    ("leverage", "max_position"),
                    "order_type",
                    ("limit_offset_bps", "max_slippage_bps", "limit_timeout_seconds"),
                    "on_opposite",
                    "allowed_actions",
                )
            },
        ),
        (
            "Safety and monitoring",
            {"fields": ("max_signal_age_seconds", "dedup_window_seconds", "expected_interval_minutes")},
        ),
        (
            "Breakers",
            {
                "fields": BREAKER_FIELDS,
                "description": "Each engages this strategy's kill switch by itself when crossed, until you resume"
                " it. Empty: off.",
            },
        ),
        ("Record", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )

    @admin.display(description="State")
    def state_badge(self, obj):
        from .halts import trading_state

        state = trading_state(obj, global_halted=TradingControl.is_halted())
        return format_html('<span class="tv-badge tv-state-{}">{}</span>', state.replace(" ", "-"), state)

    @admin.display(description="Sizing")
    def sizing(self, obj):
        if obj.sizing_mode == Strategy.SizingMode.SIGNAL:
            return "alert volume"
        size = f"{obj.size_value.normalize():f}" if obj.size_value else "?"
        return f"{obj.get_sizing_mode_display().split(' (')[0]}: {size}"

    @admin.display(description="Passphrase")
    def passphrase_state(self, obj):
        return "own passphrase (hashed)" if obj and obj.passphrase_hash else "global passphrase"

    @admin.display(description="Kill switch")
    def kill_switch_state(self, obj):
        if obj is None or obj.pk is None:
            return "–"
        change_url = reverse("admin:strategies_strategy_change", args=[obj.pk])
        if obj.halted:
            return format_html(
                '<strong class="tv-bad-text">ENGAGED</strong> by {} at {}{} '
                '<a class="button tv-btn-resume" href="{}">Resume…</a>',
                obj.halted_by or "?",
                obj.halted_at,
                f" — “{obj.halt_reason}”" if obj.halt_reason else "",
                killswitch_url("strategy", "release", str(obj.pk), change_url),
            )
        return format_html(
            'Off (trading) <a class="button tv-btn-halt" id="tv-halt-strategy" href="{}">Halt…</a>',
            killswitch_url("strategy", "engage", str(obj.pk), change_url),
        )

    def save_model(self, request, obj, form, change):
        before = strategy_snapshot(Strategy.objects.get(pk=obj.pk)) if change else None
        if form.cleaned_data.get("clear_passphrase"):
            obj.set_passphrase(None)
        elif form.cleaned_data.get("new_passphrase"):
            obj.set_passphrase(form.cleaned_data["new_passphrase"])
        super().save_model(request, obj, form, change)
        if before is None:
            audit_record(
                actor=request.user,
                target_type="strategy",
                target_id=obj.strategy_id,
                field="created",
                old="",
                new=json.dumps({k: str(v) for k, v in strategy_snapshot(obj).items() if k != "passphrase_hash"}),
                strategy=obj,
            )
        else:
            strategy_audit_changes(before=before, strategy=obj, actor=request.user)
        request._tv_previous_account_id = before.get("account_id") if before else None

    def save_formset(self, request, form, formset, change):
        """Subscriptions: every change audited (who, old, new), like the strategy's settings."""
        before = {
            sub.pk: {f: getattr(sub, f) for f in SUBSCRIPTION_AUDITED}
            for sub in Subscription.objects.filter(strategy=form.instance)
        }
        super().save_formset(request, form, formset, change)
        for sub in formset.new_objects:
            audit_record(
                actor=request.user,
                target_type="subscription",
                target_id=str(sub.pk),
                field="created",
                old="",
                new=f"account {sub.account.label}",
                strategy=form.instance,
            )
        for sub, _fields in formset.changed_objects:
            if before.get(sub.pk, {}).get("halted") != sub.halted:
                # The subscription's kill switch goes through its verb (audit, who and when,
                # notification), like every other switch.
                Subscription.objects.filter(pk=sub.pk).update(halted=not sub.halted)
                subscription_switch(subscription=sub, engage=sub.halted, actor=request.user, reason="from the admin")
            for field in SUBSCRIPTION_AUDITED:
                if field == "halted":
                    continue
                old, new = before.get(sub.pk, {}).get(field), getattr(sub, field)
                if old != new:
                    audit_record(
                        actor=request.user,
                        target_type="subscription",
                        target_id=str(sub.pk),
                        field=field,
                        old=old,
                        new=new,
                        strategy=form.instance,
                    )
        for sub in formset.deleted_objects:
            audit_record(
                actor=request.user,
                target_type="subscription",
                target_id=str(sub.pk),
                field="deleted",
                old=f"account {sub.account.label}",
                new="",
                strategy=form.instance,
            )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        subscriptions_sync(
            strategy=form.instance, previous_account_id=getattr(request, "_tv_previous_account_id", None)
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if obj is not None:
            extra["alert_templates"] = alert_templates(obj)
            extra["webhook_url"] = request.build_absolute_uri(reverse("tv-webhook"))
            extra["pnl_chart"] = strategy_pnl_chart(obj)
            extra["audit_entries"] = list(
                AuditEntry.objects.filter(strategy=obj).order_by("-at", "-id")[:AUDIT_PANEL_ROWS]
            )
            extra["audit_all_url"] = (
                reverse("admin:strategies_auditentry_changelist") + f"?strategy__id__exact={obj.pk}"
            )
            extra["preview"] = self._sizing_preview(request, obj)
        # Before the change form's transaction: the preview may ask the exchange.
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _sizing_preview(self, request: HttpRequest, strategy: Strategy) -> dict:
        """The sizing preview form's values, and its result when it was submitted (GET)."""
        from execution.services import strategy_sizing_preview

        form = SizingPreviewForm(request.GET if "preview_price" in request.GET else None)
        result = None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            result = strategy_sizing_preview(
                strategy=strategy,
                action=data["preview_action"],
                price=data["preview_price"],
                volume=data["preview_volume"],
                ticker=data["preview_ticker"] or "BTCUSDT.P",
            )
        return {"form": form, "result": result}

    def get_urls(self):
        return [
            path(
                "<int:object_id>/send-test-signal/",
                self.admin_site.admin_view(self.send_test_view),
                name="strategies_strategy_send_test",
            )
        ] + super().get_urls()

    def send_test_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        strategy = get_object_or_404(Strategy.objects.select_related("account"), pk=object_id)
        self._send_test(request, [strategy])
        return HttpResponseRedirect(reverse("admin:strategies_strategy_change", args=[strategy.pk]))

    def _send_test(self, request, strategies):
        for strategy in strategies:
            signal = signal_send_test(strategy=strategy, actor=request.user)
            url = reverse("admin:signals_signal_change", args=[signal.pk])
            self.message_user(
                request,
                format_html(
                    'Test signal <a href="{}">#{}</a> sent for {}: it runs the whole chain on paper. '
                    "Open it to follow its timeline.",
                    url,
                    signal.pk,
                    strategy.strategy_id,
                ),
                messages.SUCCESS,
            )

    @admin.action(description="Send a test signal (paper)", permissions=["change"])
    def send_test_signal(self, request, queryset):
        self._send_test(request, list(queryset.select_related("account")[:20]))

    @admin.action(description="Engage kill switch…", permissions=["change"])
    def engage_kill_switch(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(killswitch_url("strategy", "engage", ids, request.get_full_path()))

    @admin.action(description="Release kill switch…", permissions=["change"])
    def release_kill_switch(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(killswitch_url("strategy", "release", ids, request.get_full_path()))


@admin.register(TradingControl)
class TradingControlAdmin(admin.ModelAdmin):
    """The global kill switch: one row, changed only through its confirmation page."""

    list_display = ("__str__", "halted_by", "halted_at", "halt_reason", "switch")
    readonly_fields = ("halted", "halted_at", "halted_by", "halt_reason", "switch")

    def changelist_view(self, request, extra_context=None):
        TradingControl.current()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Switch")
    def switch(self, obj):
        if obj.halted:
            return format_html(
                '<a class="button tv-btn-resume" href="{}">Resume all trading…</a>', killswitch_url("global", "release")
            )
        return format_html(
            '<a class="button tv-btn-halt" href="{}">Stop all trading…</a>', killswitch_url("global", "engage")
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(FastListMixin, admin.ModelAdmin):
    list_display = ("at", "actor", "target_type", "target_id", "field", "old_value", "new_value", "note")
    list_filter = ("target_type", "strategy", ("at", admin.DateFieldListFilter))
    search_fields = ("=actor", "=target_id", "=field")
    list_select_related = ("strategy",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
