"""What needs the operator now: the dashboard's attention block, as a registry of checks.

Each check is one function taking an `AttentionContext` and returning `Attention` entries;
`attention_items` runs them all, most severe first. Another app adds its own with
`@attention_check("name")` in a module its AppConfig.ready() imports (unprotected positions
once protective orders exist, engaged circuit breakers, ...). A check that crashes is itself
an entry: the block never says "All clear" because a check could not look.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

logger = logging.getLogger("tvtrader.admin")

STUCK_AFTER = timedelta(seconds=60)
LIST_LIMIT = 20
# "Since you last looked" for someone who never looked: bounded, so the query stays cheap.
UNSEEN_HORIZON = timedelta(days=7)
LEVELS = {"error": 0, "warning": 1, "info": 2}

REFUSAL_LABELS = {
    "bad_passphrase": "wrong passphrase",
    "ip_not_allowed": "address not allowed",
    "body_too_large": "body too large",
    "not_json": "not JSON (counted, never stored)",
}
REFUSAL_HINTS = {
    "bad_passphrase": "The alert's passphrase must be the global WEBHOOK_PASSPHRASE, or the strategy's own "
    "when it has one. Copy the alert message from the strategy page again.",
    "ip_not_allowed": "Only TradingView's addresses are accepted (WEBHOOK_IP_ALLOWLIST_ENABLED).",
    "body_too_large": "The alert message is larger than the webhook accepts.",
    "not_json": "TradingView sent a message that is not valid JSON (a trailing comma, a missing quote, an "
    "empty placeholder). Such bodies are only counted, never stored: copy the alert template from the "
    "strategy page again.",
}


@dataclass(frozen=True)
class Attention:
    key: str  # stable id of the kind of entry (CSS id, tests)
    level: str  # error / warning / info
    title: str
    detail: str = ""
    url: str = ""  # an admin page, absolute path
    seen_key: str = ""  # offers "Mark as seen" for OperatorMark(key=seen_key)


@dataclass
class AttentionContext:
    now: datetime
    rows: list[Any] = field(default_factory=list)  # dashboard.StrategyRow
    health: dict[str, Any] = field(default_factory=dict)
    user: Any = None


Check = Callable[[AttentionContext], Iterable[Attention]]
CHECKS: dict[str, Check] = {}


def attention_check(name: str) -> Callable[[Check], Check]:
    """Register a check under `name` (registering the same name again replaces it)."""

    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def attention_items(
    *, rows: list[Any], health: dict[str, Any], user: Any = None, now: datetime | None = None
) -> list[Attention]:
    ctx = AttentionContext(now=now or timezone.now(), rows=rows, health=health, user=user)
    items: list[Attention] = []
    for name, check in CHECKS.items():
        try:
            items.extend(check(ctx))
        except Exception as exc:  # one broken check must not hide the others
            logger.exception("event=attention_check_failed check=%s", name)
            items.append(
                Attention(
                    key=f"check-{name}",
                    level="error",
                    title=f"Could not check {name.replace('_', ' ')}",
                    detail=f"{type(exc).__name__}: {exc}"[:300],
                )
            )
    return sorted(items, key=lambda item: LEVELS.get(item.level, 9))


def _admin_url(name: str, *args: Any, query: str = "") -> str:
    try:
        url = reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return ""
    return f"{url}?{query}" if query else url


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def local_time(at: datetime) -> str:
    """A time for people: seconds and the time zone, always."""
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- The checks --------------------------------------------------------------------------


@attention_check("services")
def services_down(ctx: AttentionContext) -> Iterable[Attention]:
    what = {
        "database": "Signals cannot be recorded.",
        "broker": "Signals are recorded but not handed to the worker; the sweeper re-queues them when it is back.",
        "worker": "Signals are recorded but nothing executes them.",
    }
    for name, consequence in what.items():
        check = ctx.health.get("checks", {}).get(name)
        if check and not check.get("ok"):
            detail = check.get("error") or f"last heartbeat {check.get('heartbeat_age_s')} s ago"
            yield Attention(f"down-{name}", "error", f"{name.capitalize()} is down", f"{consequence} ({detail})")


@attention_check("unknown_orders")
def unknown_orders(ctx: AttentionContext) -> Iterable[Attention]:
    from execution.models import Order

    unknown = list(
        Order.objects.filter(status=Order.Status.UNKNOWN)
        .select_related("strategy")
        .only("id", "client_order_id", "symbol", "strategy__strategy_id", "submitted_at")[: LIST_LIMIT + 1]
    )
    if unknown:
        more = "+" if len(unknown) > LIST_LIMIT else ""
        yield Attention(
            "unknown-orders",
            "error",
            f"{min(len(unknown), LIST_LIMIT)}{more} order(s) in an unknown state",
            "The exchange's answer was lost; the engine is looking them up by client order id. "
            + ", ".join(f"{o.client_order_id} ({o.strategy.strategy_id} {o.symbol})" for o in unknown[:5]),
            _admin_url("execution_order_changelist", query="status__exact=unknown"),
        )


@attention_check("stuck_signals")
def stuck_signals(ctx: AttentionContext) -> Iterable[Attention]:
    from signals.models import Signal

    stuck = Signal.objects.filter(
        status__in=Signal.PENDING_STATUSES,
        received_at__lt=ctx.now - STUCK_AFTER,
        received_at__gte=ctx.now - timedelta(days=7),
    )[:101].count()
    if stuck:
        yield Attention(
            "stuck-signals",
            "error",
            f"{stuck if stuck <= 100 else '100+'} signal(s) waiting more than 60 s",
            "Accepted or executing for over a minute: check the worker and the broker.",
            _admin_url("signals_signal_changelist", query="stuck=yes"),
        )


@attention_check("reconcile_drift")
def reconcile_drift(ctx: AttentionContext) -> Iterable[Attention]:
    from execution.models import ExchangeAccount
    from execution.selectors import reconciliation_drift

    entries = reconciliation_drift()
    labels = set(
        ExchangeAccount.objects.filter(label__in=[e["account"] for e in entries]).values_list("label", flat=True)
    )
    for entry in entries:
        if entry["account"] not in labels:
            continue  # the account was removed (or renamed) since: its next check cannot come
        lines = entry["lines"]
        at = datetime.fromisoformat(entry["at"]) if entry.get("at") else None
        when = f" (reconciled {local_time(at)})" if at else ""
        yield Attention(
            "drift",
            "error",
            f"Drift on account {entry['account']}: {len(lines)} difference(s) with the exchange",
            "; ".join(lines[:5])
            + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
            + f"{when}. Check the exchange, then `manage.py reconcile --fix --account {entry['account']}` "
            "adopts its view.",
            _admin_url("execution_position_changelist"),
        )


def _signal_refusal_label(reason: str) -> str:
    if reason.startswith("not JSON"):
        return "not valid JSON"
    if reason.startswith("invalid alert: "):
        fields = [part.split(" ", 1)[0] for part in reason[len("invalid alert: ") :].split("; ")]
        return "invalid alert (" + ", ".join(sorted(set(fields))[:4]) + ")"
    return reason.split(":", 1)[0][:60] or "rejected"


def refusals_read(*, since: datetime) -> tuple[list[tuple], list[tuple]]:
    """Refusals since `since`, read once: requests refused before they became signals
    (rows counted per day and source: pk, reason, count, last_seen) and signals recorded as
    rejected (received_at, reason)."""
    from signals.models import Signal, WebhookRejection

    counted = list(
        WebhookRejection.objects.filter(last_seen__gt=since, day__gte=since.date()).values_list(
            "pk", "reason", "count", "last_seen"
        )
    )
    rejected = list(
        Signal.objects.filter(status=Signal.Status.REJECTED, received_at__gt=since)
        .order_by("-id")
        .values_list("received_at", "reason")[:5000]
    )
    return counted, rejected


def refusals_count(rows: tuple[list[tuple], list[tuple]], *, since: datetime, baseline: dict[str, int]) -> Counter:
    """Refused alerts after `since`, by reason label. `baseline` holds the counts already
    seen of the rows that existed at `since` (a row counts a whole day)."""
    counted, rejected = rows
    counts: Counter = Counter()
    for pk, reason, n, last_seen in counted:
        new = n - baseline.get(str(pk), 0)
        if last_seen > since and new > 0:
            counts[REFUSAL_LABELS.get(reason, reason)] += new
    for received_at, reason in rejected:
        if received_at > since:
            counts[_signal_refusal_label(reason or "")] += 1
    return counts


def refusals_snapshot(*, now: datetime) -> dict[str, int]:
    """The counts of today's refusal rows, kept with an operator's "seen" mark."""
    from signals.models import WebhookRejection

    return {str(pk): n for pk, n in WebhookRejection.objects.filter(day__gte=now.date()).values_list("pk", "count")}


def _day_start(now: datetime) -> datetime:
    # WebhookRejection.day is the UTC date of the request.
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _last_refusal(code: str, *, now: datetime) -> str:
    """Which strategy the latest refusal of this kind named, and what was wrong (never the body)."""
    from signals.models import WebhookRejection

    last = (
        WebhookRejection.objects.filter(day__gte=(now - UNSEEN_HORIZON).date(), reason=code)
        .order_by("-last_seen")
        .values_list("last_strategy_key", "last_detail")
        .first()
    )
    if not last or not last[0]:
        return ""
    return f"Last for {last[0]}" + (f": {last[1]}" if last[1] else "") + ". "


@attention_check("refused_alerts")
def refused_alerts(ctx: AttentionContext) -> Iterable[Attention]:
    from .models import OperatorMark

    mark = None
    if ctx.user is not None and getattr(ctx.user, "pk", None):
        mark = OperatorMark.objects.filter(user_id=ctx.user.pk, key="refusals").first()
    day_start = _day_start(ctx.now) - timedelta(microseconds=1)
    look_since = mark.at if mark is not None else ctx.now - UNSEEN_HORIZON
    rows = refusals_read(since=min(day_start, look_since))
    today = refusals_count(rows, since=day_start, baseline={})
    if mark is not None:
        unseen = refusals_count(rows, since=mark.at, baseline=mark.data.get("rows", {}))
        looked = f"since you last looked ({local_time(mark.at)})"
    else:
        unseen = refusals_count(rows, since=look_since, baseline={})
        looked = "in the last 7 days (never marked as seen)"
    by_code = {label: code for code, label in REFUSAL_LABELS.items()}
    for label in sorted(set(today) | set(unseen), key=lambda lb: (-unseen[lb], -today[lb], lb)):
        code = by_code.get(label, "")
        if code:
            url = _admin_url("signals_webhookrejection_changelist", query=f"reason={code}")
        else:
            url = _admin_url("signals_signal_changelist", query="status__exact=rejected")
        hint = REFUSAL_HINTS.get(code, "Open one to see why it was refused and how to fix the alert.")
        if code:
            hint = _last_refusal(code, now=ctx.now) + hint
        yield Attention(
            f"refused-{code or 'signal'}",
            "warning" if unseen[label] else "info",
            f"Alerts refused: {label}",
            f"{today[label]} today, {unseen[label]} {looked}. {hint}",
            url,
            seen_key="refusals" if unseen[label] else "",
        )


@attention_check("protection_refused")
def refused_protection(ctx: AttentionContext) -> Iterable[Attention]:
    from execution.selectors import protection_refused

    refused = protection_refused(since=ctx.now - timedelta(days=1))
    if refused:
        yield Attention(
            "protection-refused",
            "error",
            f"{len(refused)} protective order(s) refused in the last 24 h",
            "A stop-loss / take-profit / trailing stop could not be placed; the position was flattened or "
            "left unprotected per the strategy's setting. "
            + "; ".join(
                f"{o.strategy.strategy_id} {o.symbol} {o.get_protection_display()}: {o.reason[:120]}"
                for o in refused[:3]
            ),
            _admin_url(
                "execution_order_changelist", query=f"status__exact=rejected&protection__exact={refused[0].protection}"
            ),
        )


@attention_check("notifications")
def failing_notifications(ctx: AttentionContext) -> Iterable[Attention]:
    from tvtrader.ops.models import NotificationTarget
    from tvtrader.ops.notifications import delivery_failures

    failures = delivery_failures()
    target_ids = [int(f["key"].split(":", 1)[1]) for f in failures if str(f.get("key", "")).startswith("target:")]
    targets = NotificationTarget.objects.select_related("strategy").in_bulk(target_ids)
    for failure in failures:
        channel = str(failure.get("channel") or "?")
        dest_key = str(failure.get("key") or "")
        if dest_key == "global":
            name = f"{channel.capitalize()} (global, from the environment)"
            url = ""
        else:
            target = targets.get(int(dest_key.split(":", 1)[1])) if dest_key.startswith("target:") else None
            if target is None or not target.enabled:
                continue  # removed or switched off since: nothing to fix
            name = str(target)
            url = _admin_url("ops_notificationtarget_change", target.pk)
        at = datetime.fromisoformat(failure["at"])
        yield Attention(
            "notify-failing",
            "error",
            f"Notifications failing: {name}",
            f"Last attempt {local_time(at)}: {failure.get('error') or 'failed'}. Messages to it are lost until "
            "it is fixed; a successful message (\u201cSend a test message\u201d) clears this.",
            url,
        )


@attention_check("silent_strategies")
def silent_strategies(ctx: AttentionContext) -> Iterable[Attention]:
    for row in ctx.rows:
        if row.silent:
            age = "never" if row.last_signal_age_s is None else f"{human_age(row.last_signal_age_s)} ago"
            yield Attention(
                "silent",
                "warning",
                f"{row.strategy.strategy_id} is silent",
                f"Last alert {age}; expected one every {row.strategy.expected_interval_minutes} min. "
                "Check the TradingView alert is still active.",
                _admin_url("strategies_strategy_change", row.strategy.pk),
            )
