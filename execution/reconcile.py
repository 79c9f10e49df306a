"""Reconciliation: what the database believes against what the exchange reports.

Per account: orders in `unknown`/`submitting` are resolved by client order id; orders we think
are open are checked; positions are compared symbol by symbol; open orders the exchange has
that we never placed are reported; protective orders (stop-loss, take-profit, trailing stop)
are looked at, and a position whose protection is missing or wrong-sized is reported. With
`fix`, the exchange's truth is adopted (position rows set to the exchange's quantity),
missing protection is placed again, and every change is written to the audit trail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .engine import protect
from .engine.ledger import order_apply_state
from .exchanges import GatewayError, gateway_for
from .models import ExchangeAccount, Order, Position

logger = logging.getLogger("tvtrader.reconcile")


@dataclass
class Difference:
    kind: str  # order / position / external_order / account
    subject: str
    ours: str
    theirs: str
    action: str = ""
    resolved: bool = False


@dataclass
class AccountReport:
    account: str
    differences: list[Difference] = field(default_factory=list)
    error: str = ""

    @property
    def unresolved(self) -> list[Difference]:
        return [d for d in self.differences if not d.resolved]


def _fmt(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def account_reconcile(*, account: ExchangeAccount, fix: bool = False, actor: Any = "reconcile") -> AccountReport:
    report = AccountReport(account=account.label)
    try:
        gateway = gateway_for(account)
    except GatewayError as exc:
        report.error = str(exc)
        report.differences.append(Difference("account", account.label, "-", "-", f"cannot connect: {exc}"))
        return report

    # 1. Every order ever sent whose final state we do not have: unknown, being submitted,
    #    open — and any still pending after a send. One being sent right now is the engine's.
    stale = timezone.now() - timezone.timedelta(seconds=30)
    unsettled = [Order.Status.UNKNOWN, Order.Status.SUBMITTING, Order.Status.PENDING]
    pending = (
        Order.objects.filter(account=account)
        .filter(
            Q(status__in=[Order.Status.UNKNOWN, Order.Status.SUBMITTING], submitted_at__lt=stale)
            | Q(status=Order.Status.PENDING, submit_count__gt=0, submitted_at__lt=stale)
            | Q(
                status__in=[Order.Status.UNKNOWN, Order.Status.SUBMITTING],
                submitted_at__isnull=True,
                created_at__lt=stale,
            )
            | Q(status__in=[Order.Status.OPEN, Order.Status.PARTIALLY_FILLED])
        )
        .filter(protection="")
        .select_related("signal")
    )
    for order in pending:
        if order.signal.is_test:
            continue  # on the scratch paper book (exchanges.gateway_for), never the account's
        try:
            state = gateway.find_order(
                symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
            )
        except GatewayError as exc:
            report.differences.append(
                Difference("order", order.client_order_id, order.status, "lookup failed", str(exc)[:120])
            )
            continue
        if state is None:
            if order.status in unsettled:
                diff = Difference(
                    "order",
                    order.client_order_id,
                    order.status,
                    "not at the exchange",
                    "never received: marked rejected" if fix else "would mark rejected (--fix)",
                )
                if fix:
                    Order.objects.filter(pk=order.pk).update(
                        status=Order.Status.REJECTED,
                        closed_at=timezone.now(),
                        reason="reconcile: the exchange has no such order",
                    )
                    diff.resolved = True
            else:
                diff = Difference(
                    "order", order.client_order_id, order.status, "not at the exchange", "needs an operator"
                )
            report.differences.append(diff)
            continue
        theirs = f"{state.status} {_fmt(state.filled)}"
        ours = f"{order.status} {_fmt(order.filled_qty)}"
        if state.status != order.status or state.filled != order.filled_qty:
            order_apply_state(order=order, state=state, book_positions=True)
            report.differences.append(
                Difference("order", order.client_order_id, ours, theirs, "adopted the exchange's state", resolved=True)
            )

    # 1b. Protective orders not final: fired (booked), cancelled, unclear (resolved by client id).
    protective = (
        Order.objects.filter(account=account)
        .exclude(protection="")
        .exclude(status__in=[*Order.TERMINAL_STATUSES, Order.Status.PENDING])
        .values_list("pk", "client_order_id", "status")
    )
    for order_id, client_order_id, status in list(protective):
        after = protect.protective_refresh(order_id=order_id)
        if after != status:
            report.differences.append(
                Difference("protective", client_order_id, status, after, "adopted the exchange's state", resolved=True)
            )

    # 2. Open orders at the exchange that we did not place (or no longer track).
    try:
        venue_open = gateway.fetch_open_orders()
    except GatewayError as exc:
        venue_open = []
        report.differences.append(Difference("account", "open orders", "-", "fetch failed", str(exc)[:120]))
    known = set(Order.objects.filter(account=account).values_list("client_order_id", flat=True))
    for state in venue_open:
        if state.client_order_id not in known:
            report.differences.append(
                Difference(
                    "external_order",
                    state.client_order_id or state.exchange_order_id,
                    "not ours",
                    f"{state.status} {_fmt(state.amount or 0)}",
                    "left alone (placed outside tvtrader)",
                    resolved=True,
                )
            )

    # 3. Positions.
    try:
        venue_positions = {p.symbol: p.qty for p in gateway.fetch_positions()}
    except GatewayError as exc:
        report.differences.append(Difference("account", "positions", "-", "fetch failed", str(exc)[:120]))
        return report
    ours_rows = {p.symbol: p for p in Position.objects.filter(account=account, strategy__isnull=True)}
    for symbol in sorted(set(venue_positions) | set(ours_rows)):
        ours_qty = ours_rows[symbol].qty if symbol in ours_rows else Decimal("0")
        theirs_qty = venue_positions.get(symbol, Decimal("0"))
        if ours_qty == theirs_qty:
            continue
        diff = Difference(
            "position",
            symbol,
            _fmt(ours_qty),
            _fmt(theirs_qty),
            "adopted the exchange's quantity" if fix else "drift (adopt with --fix)",
        )
        if fix:
            row, _ = Position.objects.get_or_create(account=account, strategy=None, symbol=symbol)
            row.qty = theirs_qty
            if theirs_qty == 0:
                row.avg_price = None
            row.save(update_fields=["qty", "avg_price", "updated_at"])
            from strategies.services import audit_record

            audit_record(
                actor=actor,
                target_type="account",
                target_id=account.label,
                field=f"position {symbol}",
                old=_fmt(ours_qty),
                new=_fmt(theirs_qty),
                note="reconcile --fix",
            )
            diff.resolved = True
        report.differences.append(diff)
    # 4. Positions whose protection is missing or wrong-sized at the exchange.
    for gap in protect.protection_gaps(account=account):
        word = gap["kind"].replace("_", " ")
        subject = f"{gap['symbol']} {word}"
        diff = Difference(
            "protection",
            subject,
            f"position {_fmt(gap['held'])}",
            f"covered {_fmt(gap['covered'])}",
            "placed again for the whole position" if fix else "missing or wrong-sized (restore with --fix)",
        )
        if fix:
            status = protect.protection_restore(gap=gap)
            diff.resolved = status in protect.LIVE_STATUSES
            if not diff.resolved:
                diff.action = f"could not be placed again ({status})"
        report.differences.append(diff)

    for diff in report.unresolved:
        logger.warning(
            "event=reconcile_drift account=%s kind=%s subject=%s ours=%s theirs=%s",
            account.label,
            diff.kind,
            diff.subject,
            diff.ours,
            diff.theirs,
        )
    return report


def reconcile_all(*, fix: bool = False, actor: Any = "reconcile", include_paper: bool = True) -> list[AccountReport]:
    accounts = ExchangeAccount.objects.all()
    if not include_paper:
        accounts = accounts.exclude(mode=ExchangeAccount.Mode.PAPER)
    return [account_reconcile(account=a, fix=fix, actor=actor) for a in accounts]


def reports_record(reports: list[AccountReport]) -> None:
    """Keep each account's unresolved differences for the dashboard until its next
    reconciliation (the periodic task and `manage.py reconcile` both record)."""
    from .selectors import reconciliation_drift_store

    at = timezone.now().isoformat()
    for report in reports:
        reconciliation_drift_store(
            account=report.account,
            lines=[f"{d.kind} {d.subject}: ours {d.ours}, exchange {d.theirs}" for d in report.unresolved],
            at=at,
        )


def format_reports(reports: list[AccountReport]) -> str:
    lines = []
    header = f"{'account':<16} {'kind':<15} {'subject':<24} {'ours':<18} {'exchange':<18} action"
    for report in reports:
        if not report.differences:
            lines.append(f"{report.account:<16} in sync")
            continue
        lines.append(header)
        for d in report.differences:
            mark = "" if d.resolved else " [UNRESOLVED]"
            lines.append(
                f"{report.account:<16} {d.kind:<15} {d.subject[:24]:<24} {d.ours[:18]:<18} "
                f"{d.theirs[:18]:<18} {d.action}{mark}"
            )
    return "\n".join(lines)
