"""Breakers in the engine: the limits of strategies.breakers checked where they can be crossed.

- Before each send (`order_refusal`, from send.order_submit): what the order would cross by
  itself — its notional, one order too many within a minute. The order is not sent.
- After an order is final (`order_final`, from the ledger and send.mark_rejected): what its
  outcome crossed — refused orders in a row, losing trades in a row, the day's realised loss.

Crossing a limit engages the strategy's or the account's kill switch (strategies.switches,
audited with "breaker:<name>" as the actor) and emits `events.breaker_tripped` (notified by
tvtrader.ops). Every count starts afresh when an operator resumes the switch. Free when no
limit is set: nothing is read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum
from django.utils import timezone

from execution import events
from execution.models import ExchangeAccount, Order
from strategies.models import AuditEntry, Strategy
from strategies.switches import switch_set

logger = logging.getLogger("tvtrader.execution")


def _owners(strategy: Strategy, account: ExchangeAccount | None):
    """(scope, owner, filter of its orders) for each owner with a limit set."""
    if strategy is not None and strategy.has_breakers:
        yield "strategy", strategy, Q(strategy_id=strategy.pk)
    if account is not None and account.has_breakers:
        yield "account", account, Q(account_id=account.pk)


def _target(scope: str, owner: Any) -> str:
    return owner.strategy_id if scope == "strategy" else owner.label


def _counting_since(scope: str, owner: Any) -> datetime:
    """Counts start afresh at the switch's last resume."""
    resumed = (
        AuditEntry.objects.filter(target_type=scope, target_id=_target(scope, owner), field="halted", new_value="False")
        .order_by("-at")
        .values_list("at", flat=True)
        .first()
    )
    return resumed or datetime(2000, 1, 1, tzinfo=timezone.get_current_timezone())


def trip(*, scope: str, owner: Any, breaker: str, reason: str) -> str:
    """Engage `owner`'s kill switch for `breaker`; returns the reason, in words."""
    strategy = owner if scope == "strategy" else None
    changed = switch_set(
        model=type(owner),
        pk=owner.pk,
        engage=True,
        actor=f"breaker:{breaker}",
        reason=reason,
        scope=scope,
        target=_target(scope, owner),
        strategy=strategy,
    )
    owner.halted = True  # the run holding this instance sees it at once
    if changed:
        owner.halted_by, owner.halt_reason = f"breaker:{breaker}", reason[:255]
        logger.warning(
            "event=breaker_tripped scope=%s target=%s breaker=%s reason=%r",
            scope,
            _target(scope, owner),
            breaker,
            reason,
        )
        events.emit(
            events.breaker_tripped,
            scope=scope,
            target=_target(scope, owner),
            breaker=breaker,
            reason=reason,
            strategy=strategy,
        )
    return reason


def _fmt(value: Decimal) -> str:
    return f"{Decimal(value).quantize(Decimal('0.01')):,}"


def order_refusal(*, strategy: Strategy, account: ExchangeAccount | None, order: Order) -> str:
    """Why `order` must not be sent ("" when it may): a limit it would cross by itself. The
    breaker trips (its owner's kill switch engages) before the refusal is returned."""
    now = timezone.now()
    for scope, owner, mine in _owners(strategy, account):
        limit = owner.breaker_max_order_notional
        if limit is not None and order.purpose == Order.Purpose.OPEN:
            price = order.limit_price or order.signal_price or Decimal("0")
            notional = order.requested_qty * price
            if notional > limit:
                return trip(
                    scope=scope,
                    owner=owner,
                    breaker="order_notional",
                    reason=f"breaker: an order of {_fmt(notional)} (notional) is above this {scope}'s limit of "
                    f"{_fmt(limit)} per order",
                )
        limit = owner.breaker_max_orders_per_minute
        if limit is not None:
            since = max(now - timedelta(seconds=60), _counting_since(scope, owner))
            sent = Order.objects.filter(mine, submitted_at__gte=since, signal__is_test=False).count()
            if sent + 1 > limit:
                return trip(
                    scope=scope,
                    owner=owner,
                    breaker="orders_per_minute",
                    reason=f"breaker: one more order would be {sent + 1} within a minute, above this {scope}'s "
                    f"limit of {limit}",
                )
    return ""


def order_final(order_id: int) -> None:
    """Check the limits an order's outcome can cross, once it is final (filled, refused,
    cancelled). Test signals never count."""
    order = (
        Order.objects.select_related("strategy", "account", "signal").filter(pk=order_id, signal__is_test=False).first()
    )
    if order is None or order.status not in Order.TERMINAL_STATUSES:
        return
    for scope, owner, mine in _owners(order.strategy, order.account):
        if getattr(owner, "halted", False):
            continue  # already stopped: nothing more to engage
        since = _counting_since(scope, owner)
        ours = Order.objects.filter(mine, signal__is_test=False)
        limit = owner.breaker_max_failed_orders
        if limit is not None and order.status == Order.Status.REJECTED:
            # Outcomes in the order they became final; an order cancelled with nothing
            # filled (a limit timeout, an operator's cancel) is neither a success nor a failure.
            last = list(
                ours.filter(
                    status__in=[Order.Status.REJECTED, Order.Status.FILLED, Order.Status.CANCELLED],
                    closed_at__gte=since,
                )
                .exclude(status=Order.Status.CANCELLED, filled_qty=0)
                .order_by("-closed_at", "-id")
                .values_list("status", flat=True)[:limit]
            )
            if len(last) == limit and all(s == Order.Status.REJECTED for s in last):
                trip(
                    scope=scope,
                    owner=owner,
                    breaker="failed_orders",
                    reason=f"breaker: {limit} orders in a row refused or never received (last: "
                    f"{order.client_order_id}: {order.reason[:80]})",
                )
                continue
        if order.realized_pnl is None:
            continue
        limit = owner.breaker_max_losing_trades
        if limit is not None and order.realized_pnl < 0:
            last = list(
                ours.filter(realized_pnl__isnull=False, last_fill_at__gte=since)
                .order_by("-last_fill_at", "-id")
                .values_list("realized_pnl", flat=True)[:limit]
            )
            if len(last) == limit and all(pnl < 0 for pnl in last):
                trip(
                    scope=scope,
                    owner=owner,
                    breaker="losing_trades",
                    reason=f"breaker: {limit} losing trades in a row (last {_fmt(order.realized_pnl)})",
                )
                continue
        limit = owner.breaker_max_daily_loss
        if limit is not None:
            day = (
                timezone.now()
                .astimezone(timezone.get_fixed_timezone(0))
                .replace(hour=0, minute=0, second=0, microsecond=0)
            )
            total = ours.filter(realized_pnl__isnull=False, last_fill_at__gte=max(day, since)).aggregate(
                total=Sum("realized_pnl")
            )["total"] or Decimal("0")
            if -total > limit:
                trip(
                    scope=scope,
                    owner=owner,
                    breaker="daily_loss",
                    reason=f"breaker: realised loss today {_fmt(-total)} is above this {scope}'s limit of "
                    f"{_fmt(limit)}",
                )
