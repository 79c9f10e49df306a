"""Domain verbs for alert intake: authenticate, validate, record exactly once, queue.

The `Signal` row is the outbox. An accepted alert is committed before the webhook answers;
queueing its execution is only a wake-up sent after the commit, and the sweeper re-queues
anything the broker lost.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from strategies.halts import halt_reason
from strategies.models import EXIT_ACTIONS, Strategy
from tvtrader.fastsql import insert_returning_pk
from tvtrader.logvalue import logvalue

from . import outbox
from . import payload as payload_mod
from .models import Signal, WebhookRejection
from .selectors import strategy_for_intake

logger = logging.getLogger("tvtrader.signals")


@dataclass
class IngestResult:
    http_status: int
    status: str  # accepted / duplicate / rejected / blocked
    signal_id: int | None = None
    reason: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "signal_id": self.signal_id}
        if self.reason:
            body["reason"] = self.reason
        if self.errors:
            body["errors"] = self.errors
        return body


UNAUTHORIZED = IngestResult(http_status=401, status="rejected", reason="unauthorized")


# --- Source address checks ---------------------------------------------------------------

_allowlist_cache: tuple[tuple, list] | None = None


def _allowed_networks() -> list:
    global _allowlist_cache
    key = (tuple(settings.TRADINGVIEW_WEBHOOK_IPS), tuple(settings.WEBHOOK_EXTRA_ALLOWED_IPS))
    if _allowlist_cache is None or _allowlist_cache[0] != key:
        nets = [ipaddress.ip_network(v.strip(), strict=False) for v in key[0] + key[1] if v.strip()]
        _allowlist_cache = (key, nets)
    return _allowlist_cache[1]


def source_allowed(remote_addr: str | None) -> bool:
    if not settings.WEBHOOK_IP_ALLOWLIST_ENABLED:
        return True
    try:
        addr = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    return any(addr in net for net in _allowed_networks())


# --- Rejections that never become signals (bounded, rate-limited logging) -----------------


class _LogThrottle:
    """At most `per_minute` log lines a minute per process for forged-request floods; the
    rest is summarised in one line when the minute rolls over."""

    def __init__(self, per_minute: int = 20):
        self.per_minute = per_minute
        self.minute = 0
        self.count = 0
        self.suppressed = 0
        self.lock = threading.Lock()

    def allow(self) -> bool:
        now_minute = int(time.time() // 60)
        with self.lock:
            if now_minute != self.minute:
                if self.suppressed:
                    logger.warning("event=webhook_rejections_suppressed count=%d", self.suppressed)
                self.minute, self.count, self.suppressed = now_minute, 0, 0
            self.count += 1
            if self.count <= self.per_minute:
                return True
            self.suppressed += 1
            return False


_rejection_log = _LogThrottle()
# In a body that is not JSON, the strategy it was meant for (to tell the trader which
# alert template is broken): only a plain strategy id is read, nothing else.
_STRATEGY_KEY_HINT = re.compile(rb"""strategy_id['"]?\s*[:=]\s*['"]?([A-Za-z0-9_.\-]{1,64})""")


def webhook_rejection_record(
    *,
    source: str | None,
    reason: str,
    strategy_key: str = "",
    user_agent: str = "",
    detail: str = "",
    at: datetime | None = None,
) -> None:
    """Count a refused request per day, source and reason; never one row per request. Past
    WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY sources a day, the rest fold into source "*".
    At most one log line per refusal, and those are throttled (`_LogThrottle`)."""
    at = at or timezone.now()
    source = (source or "unknown")[:64]
    # A header may carry what PostgreSQL refuses (NUL): replaced, so counting cannot fail.
    strategy_key, user_agent = payload_mod.storable_text(strategy_key), payload_mod.storable_text(user_agent)
    last = {
        "last_seen": at,
        "last_strategy_key": strategy_key[:64],
        "last_user_agent": user_agent[:200],
        "last_detail": detail[:200],
    }
    if _rejection_log.allow():
        logger.warning(
            "event=webhook_refused reason=%s source=%s strategy=%s%s",
            logvalue(reason),
            logvalue(source),
            logvalue(strategy_key[:64] or "-"),
            f" detail={logvalue(detail)}" if detail else "",
        )
    try:
        _rejection_count(day=at.date(), source=source, reason=reason, n=1, at=at, last=last)
    except Exception:  # counting must never turn a 401 into a 500
        logger.exception("event=webhook_rejection_count_failed reason=%s", logvalue(reason))


def _rejection_count(*, day, source: str, reason: str, n: int, at: datetime, last: dict[str, Any]) -> None:
    rows = WebhookRejection.objects.filter(day=day)
    if rows.filter(source=source, reason=reason).update(count=F("count") + n, **last):
        return
    individual = rows.exclude(source="*")
    if source != "*" and individual.count() >= settings.WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY:
        _rejection_count(day=day, source="*", reason=reason, n=n, at=at, last=last)
        return
    try:
        with transaction.atomic():
            row = WebhookRejection.objects.create(day=day, source=source, reason=reason, count=n, first_seen=at, **last)
    except IntegrityError:  # a parallel request created it first
        rows.filter(source=source, reason=reason).update(count=F("count") + n, **last)
        return
    if source != "*" and individual.count() > settings.WEBHOOK_REJECTION_MAX_SOURCES_PER_DAY:
        # Parallel requests from new sources all passed the check above: whoever finds the
        # day over its bound folds its own row (with whatever it counted since) into "*".
        with transaction.atomic():
            counted = rows.select_for_update().filter(pk=row.pk).values_list("count", flat=True).first()
            if counted:
                rows.filter(pk=row.pk).delete()
        if counted:
            _rejection_count(day=day, source="*", reason=reason, n=counted, at=at, last=last)


_unavailable_log = _LogThrottle(per_minute=120)
# What a 503'd alert was, for the operator to replay by hand: never the passphrase, never the
# whole body, one short token per field.
_UNAVAILABLE_FIELDS = ("strategy_id", "action", "ticker", "price", "volume", "bar_time", "time", "order_id", "id")


def webhook_unavailable_record(
    *,
    body: bytes,
    source: str | None,
    received_at: datetime,
    failure: str,
    maybe_recorded: bool,
    elapsed_ms: float,
) -> None:
    """One line for an alert answered 503 because the database did not answer (no traceback;
    at most 120 a minute per process, the rest counted in one line). Touches no database."""
    if not _unavailable_log.allow():
        return
    try:
        data = payload_mod.parse_body(body)
    except Exception:
        data = None
    fields = []
    if isinstance(data, dict):
        for name in _UNAVAILABLE_FIELDS:
            value = data.get(name)
            if value not in (None, "") and not isinstance(value, (dict, list)):
                fields.append(f"{name}={''.join(c if c.isprintable() and c != ' ' else '_' for c in str(value)[:40])}")
    logger.warning(
        "event=webhook_unavailable failure=%s recorded=%s arrived=%s elapsed_ms=%.0f source=%s %s",
        failure,
        "unknown" if maybe_recorded else "no",
        received_at.isoformat(timespec="milliseconds"),
        elapsed_ms,
        (source or "unknown")[:64],
        " ".join(fields) or "body=unparsed",
    )


# --- Intake ------------------------------------------------------------------------------


def _dedup_key(strategy: Strategy, alert: payload_mod.Alert, received_at: datetime) -> tuple[str, bool]:
    """The idempotency key. With a bar time it identifies the bar exactly; without one, the
    alert falls in a window bucket (and the previous bucket is checked under a lock)."""
    if alert.bar_time is not None:
        anchor = "bar:" + alert.bar_time.isoformat()
        windowed = False
    elif alert.fired_at is not None:
        # {{timenow}} names one firing of one alert: a resend carries the same one, however
        # late it comes. Identical alerts fired within the window still collapse (the lock).
        anchor = "fired:" + alert.fired_at.isoformat()
        windowed = True
    else:
        window = max(int(strategy.dedup_window_seconds or 1), 1)
        anchor = f"win{window}:{int(received_at.timestamp()) // window}"
        windowed = True
    parts = [str(strategy.pk), alert.action, alert.ticker, alert.tv_order_id, anchor]
    return hashlib.sha256("|".join(parts).encode()).hexdigest(), windowed


def _authenticate(passphrase: Any, strategy: Strategy | None) -> bool:
    given = passphrase if isinstance(passphrase, str) else ""
    # Both comparisons always run, so timing says nothing about which one matters.
    global_ok = hmac.compare_digest(given.encode(), settings.WEBHOOK_PASSPHRASE.encode())
    if strategy is not None and strategy.passphrase_hash:
        return strategy.check_passphrase(given) and bool(given)
    return global_ok and bool(given)


def _signal_fields(alert: payload_mod.Alert) -> dict[str, Any]:
    return {
        "action": alert.action,
        "ticker": alert.ticker,
        "exchange": alert.exchange,
        "price": alert.price,
        "volume": alert.volume,
        "timeframe": alert.timeframe,
        "bar_time": alert.bar_time,
        "fired_at": alert.fired_at,
        "tv_order_id": alert.tv_order_id,
        "comment": alert.comment,
        "market_position": alert.market_position,
        "market_position_size": alert.market_position_size,
        "position_size": alert.position_size,
        "prev_market_position": alert.prev_market_position,
        "protection": alert.protection,
    }


def _record_rejected(*, common: dict[str, Any], reason: str, errors: dict | None = None, **fields) -> Signal:
    return Signal.objects.create(status=Signal.Status.REJECTED, reason=reason, errors=errors, **common, **fields)


def signal_ingest(
    *,
    body: bytes,
    content_type: str,
    remote_addr: str | None,
    received_at: datetime,
    user_agent: str = "",
    on_accepted=None,
) -> IngestResult:
    """Take one webhook request to a recorded outcome.

    `on_accepted(signal_id, strategy_key)` runs after the commit (default: queue execution). The caller
    must treat database errors as "not recorded" (answer 503 so TradingView resends).
    """
    if len(body) > settings.WEBHOOK_MAX_BODY_BYTES:
        webhook_rejection_record(source=remote_addr, reason="body_too_large", user_agent=user_agent, at=received_at)
        return IngestResult(http_status=413, status="rejected", reason="body too large")
    if not source_allowed(remote_addr):
        webhook_rejection_record(source=remote_addr, reason="ip_not_allowed", user_agent=user_agent, at=received_at)
        return IngestResult(http_status=403, status="rejected", reason="forbidden")

    try:
        data = payload_mod.parse_body(body)
    except payload_mod.NotJSON as exc:
        # Nothing in a body that is not JSON can be authenticated, so anyone could have sent
        # it: it is counted (bounded rows, with what was wrong and the strategy it names)
        # and never stored, whatever it contains. The console lists the counts.
        hint = _STRATEGY_KEY_HINT.search(body[:4096])
        webhook_rejection_record(
            source=remote_addr,
            reason="not_json",
            strategy_key=hint.group(1).decode() if hint else "",
            user_agent=user_agent,
            detail=str(exc),
            at=received_at,
        )
        return IngestResult(http_status=400, status="rejected", reason=str(exc))

    strategy = strategy_for_intake(strategy_key=data.get("strategy_id"))
    given = data.get("passphrase")
    if not _authenticate(given, strategy):
        key = data.get("strategy_id") if isinstance(data.get("strategy_id"), str) else ""
        webhook_rejection_record(
            source=remote_addr, reason="bad_passphrase", strategy_key=key, user_agent=user_agent, at=received_at
        )
        return UNAUTHORIZED

    common: dict[str, Any] = {
        "content_type": payload_mod.storable_text(content_type[:100]),
        "remote_addr": remote_addr,
        "received_at": received_at,
    }
    # The passphrase that authenticated is the strategy's own or the global one: both are
    # hidden wherever they appear in what is stored, answered or logged (a field quoted in an
    # error, a comment, an order id).
    hide = payload_mod.secrets_to_hide(settings.WEBHOOK_PASSPHRASE, given)
    common["payload"], common["raw_body"] = payload_mod.redacted_copies(data, hide)
    result = payload_mod.validate(data)
    if result.errors or strategy is None:
        errors = {name: payload_mod.hide_secrets(text, hide) for name, text in result.errors.items()}
        if strategy is None and "strategy_id" not in errors:
            errors["strategy_id"] = payload_mod.hide_secrets(
                f"no strategy is configured with strategy_id {data.get('strategy_id')!r}", hide
            )
        partial = {k: v for k, v in result.partial.items() if k in ("action", "ticker", "exchange", "timeframe")}
        for key in ("price", "volume", "bar_time", "fired_at", "tv_order_id"):
            if result.partial.get(key) not in (None, ""):
                partial[key] = result.partial[key]
        for key in ("timeframe", "tv_order_id"):
            if key in partial:
                partial[key] = payload_mod.hide_secrets(partial[key], hide)
        reason = "invalid alert: " + "; ".join(f"{k} {v}" for k, v in errors.items())
        signal = _record_rejected(
            common=common,
            reason=reason,
            errors=errors,
            strategy=strategy,
            strategy_key=str(result.partial.get("strategy_key") or "")[:64],
            committed_at=timezone.now(),
            **partial,
        )
        logger.info(
            "event=signal_rejected strategy=%s signal=%s reason=%s",
            logvalue(signal.strategy_key or "-"),
            signal.pk,
            logvalue(reason, limit=300),
        )
        _notify_refused(signal.pk, strategy, signal.strategy_key, "rejected", reason)
        return IngestResult(http_status=400, status="rejected", signal_id=signal.pk, reason=reason, errors=errors)

    alert = result.alert
    assert alert is not None
    for name in ("comment", "tv_order_id", "timeframe"):  # the free-text fields
        setattr(alert, name, payload_mod.hide_secrets(getattr(alert, name), hide))
    status, reason, http_status = _decide(strategy, alert, received_at)
    dedup_key, windowed = _dedup_key(strategy, alert, received_at)
    fields = _signal_fields(alert)

    row = {
        "strategy": strategy,
        "strategy_key": strategy.strategy_id,
        "status": status,
        "reason": reason,
        "dedup_key": dedup_key,
        **common,
        **fields,
    }
    signal_id: int | None = None
    duplicate_of: int | None = None
    try:
        if windowed:
            with transaction.atomic():
                # Serialise alerts of this strategy that carry no bar time, so that a burst
                # of identical ones straddling a window edge still collapses into one.
                Strategy.objects.select_for_update().filter(pk=strategy.pk).values_list("pk").first()
                duplicate_of = _recent_duplicate(strategy, alert, received_at)
                if duplicate_of is None:
                    signal_id = Signal.objects.create(committed_at=timezone.now(), **row).pk
        else:
            signal_id = _insert_signal(row)
    except IntegrityError:
        duplicate_of = Signal.objects.filter(dedup_key=dedup_key).values_list("pk", flat=True).first()
        if duplicate_of is None:
            raise
    if signal_id is not None and status == Signal.Status.ACCEPTED:
        # Runs now when the row is committed (autocommit), or at the commit of an enclosing
        # transaction; never before.
        transaction.on_commit(lambda: (on_accepted or outbox.signal_enqueue)(signal_id, strategy.strategy_id))

    if duplicate_of is not None:
        Signal.objects.filter(pk=duplicate_of).update(
            duplicate_count=F("duplicate_count") + 1, last_duplicate_at=received_at
        )
        logger.info("event=signal_duplicate strategy=%s signal=%s", logvalue(strategy.strategy_id), duplicate_of)
        return IngestResult(http_status=200, status="duplicate", signal_id=duplicate_of, reason="duplicate alert")

    logger.info(
        "event=signal_%s strategy=%s signal=%s action=%s ticker=%s price=%s volume=%s%s",
        status,
        logvalue(strategy.strategy_id),
        signal_id,
        logvalue(alert.action),
        logvalue(alert.ticker),
        alert.price,
        alert.volume,
        f" reason={logvalue(reason, limit=300)}" if reason else "",
    )
    if status != Signal.Status.ACCEPTED:
        _notify_refused(signal_id, strategy, strategy.strategy_id, status, reason, alert)
    return IngestResult(http_status=http_status, status=status, signal_id=signal_id, reason=reason)


def _notify_refused(signal_id, strategy, strategy_key: str, status: str, reason: str, alert=None) -> None:
    """Tell the trader about an authenticated alert that will not trade (rejected by a rule,
    or blocked by a kill switch). Unauthenticated garbage is only counted, never notified."""
    try:
        from tvtrader.ops.notifications import notification_send

        what = f"{alert.action} {alert.ticker}" if alert is not None else "alert"
        icon = "⛔" if status == Signal.Status.BLOCKED else "❌"
        notification_send(
            event="signal_failed",
            strategy=strategy,
            text=f"{icon} {strategy_key or '-'}: {what} {status} — {reason}\nsignal #{signal_id}",
        )
    except Exception:
        logger.exception("event=notification_failed strategy=%s signal=%s", logvalue(strategy_key or "-"), signal_id)


def _insert_signal(row: dict[str, Any]) -> int:
    """One INSERT. In autocommit (how the webhook runs) the statement is its own transaction:
    no BEGIN/COMMIT round trips; the unique dedup key makes a concurrent twin fail with
    IntegrityError. Inside an enclosing transaction a savepoint keeps that failure local."""
    signal = Signal(committed_at=timezone.now(), **row)
    if connection.in_atomic_block:
        with transaction.atomic():
            return insert_returning_pk([signal])[0].pk
    return insert_returning_pk([signal])[0].pk


def _recent_duplicate(strategy: Strategy, alert: payload_mod.Alert, received_at: datetime) -> int | None:
    since = received_at - timedelta(seconds=max(int(strategy.dedup_window_seconds or 1), 1))
    return (
        Signal.objects.filter(
            strategy=strategy,
            action=alert.action,
            ticker=alert.ticker,
            tv_order_id=alert.tv_order_id,
            bar_time__isnull=True,
            dedup_key__isnull=False,
            received_at__gte=since,
        )
        .order_by("-id")
        .values_list("pk", flat=True)
        .first()
    )


def _decide(strategy: Strategy, alert: payload_mod.Alert, received_at: datetime) -> tuple[str, str, int]:
    """Accepted, blocked (halted) or rejected (a rule of this strategy says no)."""
    halted = halt_reason(
        global_halted=strategy.global_halted,
        strategy_halted=strategy.halted,
        strategy_enabled=strategy.enabled,
        account_halted=strategy.account_halted,
        account_label=strategy.account_label or "",
        fans_out=strategy.fans_out,
    )
    if halted:
        return Signal.Status.BLOCKED, f"blocked: {halted}", 200
    if alert.action not in (strategy.allowed_actions or []):
        return Signal.Status.REJECTED, f"rejected: action {alert.action} is not allowed for this strategy", 422
    if alert.action not in EXIT_ACTIONS:
        refusal = _time_refusal(strategy, alert, received_at)
        if refusal:
            return Signal.Status.REJECTED, refusal, 422
    return Signal.Status.ACCEPTED, "", 202


def _time_refusal(strategy: Strategy, alert: payload_mod.Alert, received_at: datetime) -> str:
    """Why an entry's times say it must not trade: fired (or its bar opened) in the future
    beyond the clock-skew tolerance, or older than the age limit. The limit is the
    strategy's `max_signal_age_seconds` (0: none), counted from fired_at, else bar_time;
    unset, SIGNAL_MAX_AGE_SECONDS counted from fired_at only ({{time}} is when the bar
    opened, hours ago on a 4h chart). Exits never come here: a late exit still closes."""
    skew = settings.SIGNAL_CLOCK_SKEW_SECONDS
    for name, moment in (("fired_at", alert.fired_at), ("bar_time", alert.bar_time)):
        if moment is not None and (ahead := (moment - received_at).total_seconds()) > skew:
            return (
                f"rejected: {name} is {ahead:.0f} s in the future (clock-skew tolerance {skew} s): the sender's"
                " clock or this server's is wrong, or the time is not TradingView's; exits are still let through"
            )
    limit = strategy.max_signal_age_seconds
    origin = alert.fired_at or alert.bar_time
    if limit is None:
        limit, origin = settings.SIGNAL_MAX_AGE_SECONDS, alert.fired_at
    if limit and origin is not None:
        age = (received_at - origin).total_seconds()
        if age > limit:
            return f"rejected: stale alert, fired {age:.0f} s ago (limit {limit} s); exits are still let through"
    return ""


# --- Test signals ------------------------------------------------------------------------


def signal_send_test(
    *,
    strategy: Strategy,
    actor: Any = None,
    action: str = "buy",
    ticker: str = "BTCUSDT.P",
    price: Any = None,
    volume: Any = None,
) -> Signal:
    """Record a test signal for `strategy` and queue it. Test signals run the whole chain
    (claim, plan, order, fills) on the paper gateway, whatever the strategy's account is."""
    from decimal import Decimal

    now = timezone.now()
    last = Signal.objects.filter(ticker=ticker, price__isnull=False).order_by("-id").values_list("price", flat=True)
    price = Decimal(str(price)) if price is not None else (last.first() or Decimal("65000"))
    volume = Decimal(str(volume)) if volume is not None else Decimal("0.01")
    exchange = (
        {"binanceusdm": "BINANCE"}.get(strategy.account.exchange, strategy.account.exchange.upper())
        if (strategy.account_id)
        else "BYBIT"
    )
    actor_name = getattr(actor, "get_username", lambda: str(actor or "system"))()
    with transaction.atomic():
        signal = Signal.objects.create(
            strategy=strategy,
            strategy_key=strategy.strategy_id,
            status=Signal.Status.ACCEPTED,
            is_test=True,
            origin=Signal.Origin.TEST,
            action=action,
            ticker=ticker,
            exchange=exchange,
            price=price,
            volume=volume,
            payload={"test_signal": True, "sent_by": actor_name},
            content_type="test",
            received_at=now,
            committed_at=now,
            comment=f"test signal from {actor_name}"[:255],
        )
        transaction.on_commit(lambda: outbox.signal_enqueue(signal.pk))
    logger.info(
        "event=test_signal strategy=%s signal=%s actor=%s",
        logvalue(strategy.strategy_id),
        signal.pk,
        logvalue(actor_name),
    )
    return signal
