"""The operator console: Django's admin with a dashboard as its index, the kill switches
(per strategy, per account, global) behind confirmation pages, and an optional second
factor at login (ADMIN_REQUIRE_2FA, django-otp TOTP)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from signals.selectors import health_report

from . import attention, charts, dashboard

logger = logging.getLogger("tvtrader.admin")

SEEN_KEYS = ("refusals",)
APP_ORDER = ("strategies", "signals", "execution", "ops", "api")
MODEL_ORDER = {
    "strategies": ("Strategy", "TradingControl", "AuditEntry"),
    "signals": ("Signal", "WebhookRejection"),
    "execution": ("Position", "Order", "Fill", "ExchangeAccount", "PaperBalance"),
}
SECURITY_APPS = ("auth", "axes", "otp_totp", "otp_static", "django_otp")


class ConsoleAdminSite(admin.AdminSite):
    site_header = "tvtrader"
    site_title = "tvtrader console"
    index_title = "Dashboard"
    index_template = "admin/console_index.html"
    # No public site beside the console: "View site" would lead nowhere ("/" redirects here).
    site_url = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if settings.ADMIN_REQUIRE_2FA:
            from django_otp.admin import OTPAdminAuthenticationForm

            self.login_form = OTPAdminAuthenticationForm
            self.login_template = "otp/admin111/login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        allowed = super().has_permission(request)
        if allowed and settings.ADMIN_REQUIRE_2FA:
            return bool(getattr(request.user, "is_verified", lambda: False)())
        return allowed

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        """Trader pages first, in the order a trader needs them; the security internals
        (users, groups, login lockouts, second-factor devices) grouped into one section last."""
        apps = super().get_app_list(request, app_label)
        if app_label:
            return apps
        trader = [a for a in apps if a["app_label"] not in SECURITY_APPS]
        trader.sort(key=lambda a: APP_ORDER.index(a["app_label"]) if a["app_label"] in APP_ORDER else 99)
        for app in trader:
            order = MODEL_ORDER.get(app["app_label"], ())
            app["models"].sort(key=lambda m: order.index(m["object_name"]) if m["object_name"] in order else 99)
        security = [m for a in apps if a["app_label"] in SECURITY_APPS for m in a["models"]]
        if security:
            trader.append(
                {
                    "name": "Security and access (logins, lockouts, second factor)",
                    "app_label": "security",
                    "app_url": next(a["app_url"] for a in apps if a["app_label"] in SECURITY_APPS),
                    "has_module_perms": True,
                    "models": security,
                }
            )
        return trader

    def get_urls(self):
        urls = [
            path(
                "killswitch/<str:scope>/<str:verb>/",
                self.admin_view(self.killswitch_view),
                name="killswitch",
            ),
            path("attention/seen/<str:key>/", self.admin_view(self.attention_seen_view), name="attention_seen"),
        ]
        return urls + super().get_urls()

    # --- Dashboard ------------------------------------------------------------------

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        now = timezone.now()
        rows, global_halted = dashboard.strategy_rows(now=now)
        health = health_report()
        since = now - dashboard.WINDOW
        latency = dashboard.latency_series(since=since)
        slippage = dashboard.slippage_series(since=since)
        from .models import TradingControl

        pnl_strategy_chart, pnl_account_chart, equity_chart = dashboard.pnl_charts()
        context = {
            "rows": rows,
            "global_halted": global_halted,
            "control": TradingControl.current(),
            "attention": attention.attention_items(rows=rows, health=health, user=request.user, now=now),
            "health": health,
            "latency_title": f"Alert → order sent, {charts.span_label(dashboard.WINDOW)}",
            "latency_chart": dashboard.latency_chart(latency, start=since, end=now),
            "slippage_title": f"Slippage vs signal price (bps), {charts.span_label(dashboard.WINDOW)}",
            "slippage_chart": charts.line_chart(
                title="Slippage against the signal price",
                unit="bps",
                start=since,
                end=now,
                series=[
                    ("mean", "#417690", [(b, a) for b, a, _ in slippage]),
                    ("worst", "#c4462a", [(b, m) for b, _, m in slippage]),
                ],
            ),
            "pnl_strategy_chart": pnl_strategy_chart,
            "pnl_account_chart": pnl_account_chart,
            "equity_chart": equity_chart,
            "can_halt": request.user.has_perm("strategies.change_strategy"),
            "can_halt_global": request.user.has_perm("strategies.change_tradingcontrol"),
            **(extra_context or {}),
        }
        for row in rows:
            row.age_text = dashboard.human_age(row.last_signal_age_s)
        return super().index(request, extra_context=context)

    def attention_seen_view(self, request: HttpRequest, key: str) -> HttpResponse:
        """POST: the operator has looked at the refused alerts; "since you last looked"
        counts from now."""
        from .services import operator_mark_seen

        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if key not in SEEN_KEYS:
            raise Http404
        operator_mark_seen(user=request.user, key=key)
        messages.info(request, "Marked as seen: the dashboard counts new refusals from now.")
        return HttpResponseRedirect(reverse("admin:index"))

    # --- Kill switches ----------------------------------------------------------------

    def killswitch_view(self, request: HttpRequest, scope: str, verb: str) -> HttpResponse:
        """Engage or release a kill switch. GET shows what will happen and asks for
        confirmation (with the options to cancel open orders and flatten positions when
        engaging); only a POST with `confirm` acts."""
        from execution.models import ExchangeAccount

        from . import services
        from .models import Strategy, TradingControl

        if verb not in ("engage", "release"):
            raise Http404
        engage = verb == "engage"
        ids = [int(i) for i in request.GET.get("ids", request.POST.get("ids", "")).split(",") if i.strip().isdigit()]
        if scope == "strategy":
            perm = "strategies.change_strategy"
            targets = list(Strategy.objects.select_related("account").filter(pk__in=ids))
        elif scope == "account":
            perm = "execution.change_exchangeaccount"
            targets = list(ExchangeAccount.objects.filter(pk__in=ids))
        elif scope == "global":
            perm = "strategies.change_tradingcontrol"
            targets = [TradingControl.current()]
        else:
            raise Http404
        if not request.user.has_perm(perm):
            raise PermissionDenied
        if not targets:
            messages.error(request, "Nothing selected.")
            return HttpResponseRedirect(reverse("admin:index"))

        next_url = request.GET.get("next") or request.POST.get("next") or ""
        if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
            next_url = ""
        next_url = next_url or reverse("admin:index")

        affected = self._affected_strategies(scope, targets)
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            reason = request.POST.get("reason", "").strip()[:255]
            changed = 0
            for target in targets:
                if scope == "strategy":
                    fn = services.strategy_halt if engage else services.strategy_resume
                    changed += fn(strategy=target, actor=request.user, reason=reason)
                elif scope == "account":
                    fn = services.account_halt if engage else services.account_resume
                    changed += fn(account=target, actor=request.user, reason=reason)
                else:
                    fn = services.global_halt if engage else services.global_resume
                    changed += fn(actor=request.user, reason=reason)
            what = self._describe(scope, targets)
            if engage:
                messages.warning(
                    request,
                    f"Kill switch engaged for {what} ({changed} changed). New and already-queued signals are "
                    "recorded as blocked and not executed.",
                )
            else:
                messages.success(request, f"Kill switch released for {what} ({changed} changed). Trading resumes.")
            if engage and request.POST.get("cancel_orders"):
                self._run_on_strategies(request, affected, "cancel")
            if engage and request.POST.get("flatten"):
                self._run_on_strategies(request, affected, "flatten")
            return HttpResponseRedirect(next_url)

        from execution.models import Order, Position

        open_orders = Order.objects.filter(
            strategy__in=affected,
            status__in=[
                Order.Status.OPEN,
                Order.Status.PARTIALLY_FILLED,
                Order.Status.PENDING,
                Order.Status.SUBMITTING,
            ],
        ).count()
        positions = list(
            Position.objects.filter(strategy__in=affected).exclude(qty=0).select_related("strategy", "account")[:50]
        )
        context = {
            **self.each_context(request),
            "title": ("Engage" if engage else "Release") + " kill switch",
            "scope": scope,
            "verb": verb,
            "engage": engage,
            "targets": targets,
            "description": self._describe(scope, targets),
            "affected": affected,
            "ids": ",".join(str(t.pk) for t in targets) if scope != "global" else "",
            "next": next_url,
            "open_orders": open_orders,
            "positions": positions,
            "queued": self._queued_count(affected),
        }
        return TemplateResponse(request, "admin/killswitch_confirm.html", context)

    @staticmethod
    def _describe(scope: str, targets: list) -> str:
        if scope == "global":
            return "ALL trading (global switch)"
        names = ", ".join(getattr(t, "strategy_id", None) or getattr(t, "label", str(t)) for t in targets[:10])
        more = f" and {len(targets) - 10} more" if len(targets) > 10 else ""
        return f"{scope} {names}{more}"

    @staticmethod
    def _affected_strategies(scope: str, targets: list) -> list:
        from .models import Strategy

        if scope == "strategy":
            return targets
        if scope == "account":
            return list(Strategy.objects.filter(account__in=targets))
        return list(Strategy.objects.all())

    @staticmethod
    def _queued_count(strategies: list) -> int:
        from signals.models import Signal

        return (
            Signal.objects.filter(
                strategy__in=strategies,
                status__in=Signal.PENDING_STATUSES,
                received_at__gte=timezone.now() - timedelta(days=7),
            )[:1001]
            .values("pk")
            .count()
        )

    @staticmethod
    def _run_on_strategies(request: HttpRequest, strategies: list, what: str) -> None:
        """Cancel open orders or flatten positions, strategy by strategy; one failure is
        reported and does not stop the others. Runs outside any transaction (exchange I/O)."""
        from execution import services as execution_services

        done, failed = 0, []
        for strategy in strategies:
            try:
                if what == "cancel":
                    done += int(execution_services.strategy_cancel_open_orders(strategy=strategy, actor=request.user))
                else:
                    execution_services.strategy_flatten(strategy=strategy, actor=request.user)
                    done += 1
            except Exception as exc:  # reported to the operator, who must act on it
                logger.exception("event=admin_%s_failed strategy=%s", what, strategy.strategy_id)
                failed.append(f"{strategy.strategy_id}: {type(exc).__name__} {exc}".strip())
        if what == "cancel":
            messages.info(request, f"Cancel requested: {done} open order(s) cancelled.")
        else:
            messages.info(request, f"Flatten requested for {done} strateg{'y' if done == 1 else 'ies'}.")
        if failed:
            messages.error(
                request,
                f"Could not {'cancel orders' if what == 'cancel' else 'flatten'} for: "
                + "; ".join(failed)
                + ". Check the exchange directly.",
            )


def killswitch_url(scope: str, verb: str, ids: str = "", next_url: str = "") -> str:
    from urllib.parse import urlencode

    query = {k: v for k, v in (("ids", ids), ("next", next_url)) if v}
    url = reverse("admin:killswitch", kwargs={"scope": scope, "verb": verb})
    return f"{url}?{urlencode(query)}" if query else url
