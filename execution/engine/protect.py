"""Protect: the stop-loss, take-profit and trailing stop orders resting at the exchange that
guard a filled entry (docs/execution.md, "Protective orders").

The ledger writes a protective order as a PENDING `Order` row in the very transaction that
records the entry's fill (its durable intent), and calls `protection_after_commit` once that
commits: the order is placed at once, on the thread that learned of the fill. Placing
follows the entries' rule — claimed by a conditional update, sent once with its
deterministic client id, an unclear outcome looked up by that id and resent only after the
venue kept saying "not found" past the grace. What this process did not finish (a worker
killed between the fill and the placement, a cancel that failed, a trigger the venue fired)
the sweeper (`protection_sweep`, Celery beat and worker start-up) takes on.

A protective order the venue refuses leaves a position unprotected: never silently — an
event (notification) says so, and by the strategy's setting the position is flattened.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from execution import events
from execution.exchanges import (
    GatewayError,
    Misconfigured,
    OrderRejected,
    SendAborted,
    gateway_for,
)
from execution.models import Order, Position
from execution.ratelimit import order_slot_acquire
from signals import outbox
from signals.models import Signal

from . import ledger

logger = logging.getLogger("tvtrader.execution")

MAX_SUBMITS = 3
#: A PENDING protective order older than this is the sweeper's (its placing thread died).
PENDING_ORPHAN_SECONDS = 2.0
LIVE_STATUSES = (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED)
#: A live protective order is looked at by the sweeper at most this often (per process): the
#: venue's private stream reports a fired one at once; the look is the fallback.
LOOK_EVERY_SECONDS = 30.0
_last_look: dict[int, float] = {}
_sweep_lock = threading.Lock()
#: Our protective client ids: the entry's (`tv` + install tag + signal + `l` + leg) + kind + generation.
_PROTECTIVE_ID = re.compile(r"^tv[0-9a-f]{6}[0-9a-z]+l\d+[str]\d+$")


def is_protective_id(client_order_id: str) -> bool:
    return bool(client_order_id) and bool(_PROTECTIVE_ID.match(client_order_id))


def protective_seen(*, client_order_id: str, account_id: int) -> str:
    """The venue's stream reported a protective order final (fired or cancelled): look it
    up and record it now (a stop's fill booked at once instead of at the next sweep)."""
    from django.db import close_old_connections

    close_old_connections()
    order_id = (
        Order.objects.filter(account_id=account_id, client_order_id=client_order_id)
        .exclude(protection="")
        .values_list("pk", flat=True)
        .first()
    )
    return protective_refresh(order_id=order_id) if order_id else ""


def _log(order: Order, event: str, **fields) -> str:
    extra = " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in fields.items())
    return f"event={event} strategy={order.signal.strategy_key or '-'} signal={order.signal_id} order={order.client_order_id} {extra}".rstrip()


def _load(order_id: int) -> Order | None:
    return Order.objects.select_related("account", "strategy", "signal", "protects").filter(pk=order_id).first()


def _gateway(order: Order):
    return gateway_for(order.account, paper=order.signal.is_test)


def _book(order: Order) -> bool:
    return order.account.is_paper or not order.signal.is_test


# --- placing ------------------------------------------------------------------------------------


def protection_after_commit(*, place: list[int], cancel: list[int]) -> None:
    """The ledger's listener: place what an entry's fill asked for, cancel what guards a
    position no longer held. Never raises into the ledger's caller (the sweeper retries)."""
    for order_id in cancel:
        try:
            protective_cancel(order_id=order_id)
        except Exception:
            logger.exception("event=protective_cancel_failed order_id=%s", order_id)
    for order_id in place:
        try:
            protective_place(order_id=order_id, fresh=True)
        except Exception:
            logger.exception("event=protective_place_failed order_id=%s", order_id)


ledger.protection_listener_set(protection_after_commit)


def _round_trigger(order: Order, gateway) -> Decimal | None:
    """The trigger on the market's price grid, rounded towards the entry (a stop a tick
    tighter, never looser); written with the send's claim."""
    if order.trigger_price is None:
        return None
    try:
        market = gateway.market(order.symbol)
    except GatewayError:
        return order.trigger_price
    entry = order.protects.avg_price if order.protects_id else None
    up = entry is not None and order.trigger_price < entry
    return market.round_price(order.trigger_price, up=up)


def _still_guarding(order: Order) -> bool:
    held = (
        Position.objects.filter(account_id=order.account_id, strategy_id=order.strategy_id, symbol=order.symbol)
        .values_list("qty", flat=True)
        .first()
    ) or Decimal("0")
    return held < 0 if order.side == "buy" else held > 0


def protective_place(*, order_id: int, resend: bool = False, fresh: bool = False) -> str:
    """Send one protective order (PENDING; or with `resend` an UNKNOWN one proven never
    received). `fresh`: written by the fill just committed (its position is not re-read:
    a close racing it cancels it through the ledger). Returns its status afterwards."""
    order = _load(order_id)
    if order is None or not order.protection:
        return ""
    wanted = (Order.Status.UNKNOWN, Order.Status.SUBMITTING) if resend else (Order.Status.PENDING,)
    if order.status not in wanted or order.cancel_requested_at is not None:
        return order.status
    if not fresh and _book(order) and not _still_guarding(order):
        Order.objects.filter(pk=order.pk, status__in=wanted).update(
            status=Order.Status.CANCELLED, reason="not sent: the position it guards is closed", closed_at=timezone.now()
        )
        return Order.Status.CANCELLED
    gateway = _gateway(order)
    trigger = _round_trigger(order, gateway)
    account = order.account
    sent: dict[str, object] = {}

    def before_send() -> None:
        if not order_slot_acquire(
            bucket_key=account.rate_limit_key, per_second=account.max_orders_per_second, timeout=10.0
        ):
            raise SendAborted("no rate-limit slot within 10 s; the sweeper tries again")
        now = timezone.now()
        claimed = (
            Order.objects.filter(pk=order.pk, status__in=wanted, submit_count=order.submit_count)
            .update(status=Order.Status.SUBMITTING, submit_count=F("submit_count") + 1, submitted_at=now,
                    trigger_price=trigger, signal_price=trigger if trigger is not None else order.signal_price)
        )  # fmt: skip
        if not claimed:
            raise SendAborted("the protective order moved on meanwhile")
        order.trigger_price = trigger
        sent["at"] = now

    try:
        state = gateway.create_protective(
            symbol=order.symbol,
            kind=order.protection,
            side=order.side,
            qty=order.requested_qty,
            trigger_price=trigger,
            trail_percent=order.trail_percent,
            trail_distance=order.trail_distance,
            client_order_id=order.client_order_id,
            before_send=before_send,
        )
    except SendAborted as exc:
        logger.info(_log(order, "protective_not_sent", reason=str(exc)))
        return order.status
    except (OrderRejected, Misconfigured) as exc:
        if "at" in sent and order.submit_count + 1 > 1:
            # A resend refused (e.g. "duplicate client id") may mean the first one landed.
            _mark(order, Order.Status.UNKNOWN, f"resend refused ({exc}); looking it up")
            return Order.Status.UNKNOWN
        _refused(order, str(exc))
        return Order.Status.REJECTED
    except GatewayError as exc:
        if "at" not in sent:
            logger.warning(_log(order, "protective_not_sent", reason=str(exc)[:200]))
            return order.status  # still PENDING (or UNKNOWN): the sweeper tries again
        _mark(order, Order.Status.UNKNOWN, f"outcome unknown after: {exc}")
        events.emit(events.exchange_error, exchange=getattr(gateway, "name", "?"), kind=type(exc).__name__)
        return Order.Status.UNKNOWN
    status = ledger.order_apply_state(order=order, state=state, book_positions=_book(order), reply=True)
    logger.info(_log(order, "protective_live", kind=order.protection, level=order.level or "-", status=status))
    if status in LIVE_STATUSES:
        _supersede(order)
    return status


def _mark(order: Order, status: str, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(status=status, reason=reason[:2000])
    logger.warning(_log(order, "protective_" + status, reason=reason[:300]))


def _supersede(order: Order) -> None:
    """The new generation is live: the earlier ones of the same entry and kind go."""
    older = (
        Order.objects.filter(
            protects_id=order.protects_id, protection=order.protection, generation__lt=order.generation
        )
        .exclude(status__in=Order.TERMINAL_STATUSES)
        .values_list("pk", flat=True)
    )
    for older_id in list(older):
        Order.objects.filter(pk=older_id, cancel_requested_at=None).update(cancel_requested_at=timezone.now())
        protective_cancel(order_id=older_id, reason="replaced by a larger one (the entry filled more)")


def _refused(order: Order, reason: str) -> None:
    """The venue refused a protective order: the position is unprotected. Said loudly, and
    flattened when the strategy says so."""
    Order.objects.filter(pk=order.pk).update(
        status=Order.Status.REJECTED, reason=reason[:2000], closed_at=timezone.now()
    )
    strategy = order.strategy
    flatten = strategy.unprotected_action == strategy.Unprotected.FLATTEN and _still_guarding(order)
    text = (
        f"{strategy.strategy_id}: the {order.get_protection_display().lower()} for {order.symbol} "
        f"({order.side} {order.requested_qty.normalize()} {order.level}) was refused by the exchange: {reason[:300]}. "
        + ("The position is being flattened." if flatten else "The position is NOT protected.")
    )
    logger.error(_log(order, "protective_refused", reason=reason[:300], flatten=flatten))
    events.emit(events.protection_failed, order=order, text=text)
    if flatten:
        protection_flatten(order=order)


def protection_flatten(*, order: Order) -> Signal | None:
    """Close the strategy's position on the protective order's market through the normal
    chain (a close signal, ordered behind anything pending on that market)."""
    entry_signal = order.signal
    now = timezone.now()
    with transaction.atomic():
        signal = Signal.objects.create(
            strategy_id=order.strategy_id,
            strategy_key=entry_signal.strategy_key,
            status=Signal.Status.ACCEPTED,
            action="close_long" if order.side == "sell" else "close_short",
            ticker=entry_signal.ticker,
            exchange=entry_signal.exchange,
            price=order.protects.avg_price if order.protects_id and order.protects.avg_price else entry_signal.price,
            volume=order.requested_qty,
            received_at=now,
            committed_at=now,
            content_type="flatten",
            origin=Signal.Origin.FLATTEN,
            is_test=entry_signal.is_test,
            payload={"flatten": True, "unprotected": order.client_order_id},
            comment=f"flatten: protective order {order.client_order_id} refused"[:255],
        )
        transaction.on_commit(lambda: outbox.signal_enqueue(signal.pk))
    logger.warning(_log(order, "protective_flatten", flatten_signal=signal.pk))
    return signal


# --- cancelling, following, resolving ------------------------------------------------------------


def protective_cancel(*, order_id: int, reason: str = "cancelled: the position it guarded was closed") -> str:
    """Cancel a protective order at the venue (asked for by `cancel_requested_at`); what the
    venue says afterwards is recorded (it may have fired meanwhile)."""
    order = _load(order_id)
    if order is None or order.is_terminal:
        return order.status if order else ""
    if order.status == Order.Status.PENDING:
        Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
            status=Order.Status.CANCELLED, reason=f"not sent: {reason}", closed_at=timezone.now()
        )
        return Order.Status.CANCELLED
    gateway = _gateway(order)
    try:
        state = gateway.cancel_protective(
            symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
        )
    except GatewayError as exc:
        logger.warning(_log(order, "protective_cancel_failed", error=str(exc)[:200]))
        return order.status  # the sweeper tries again (cancel_requested_at stays set)
    if state is None:
        if order.status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN) and not _past_grace(order):
            return order.status  # may still land: looked at again by the sweeper
        Order.objects.filter(pk=order.pk).exclude(status__in=Order.TERMINAL_STATUSES).update(
            status=Order.Status.CANCELLED, reason=reason, closed_at=timezone.now()
        )
        return Order.Status.CANCELLED
    status = ledger.order_apply_state(order=order, state=state, book_positions=_book(order))
    if status == Order.Status.CANCELLED:
        Order.objects.filter(pk=order.pk).update(reason=reason)
    logger.info(_log(order, "protective_cancelled", status=status))
    return status


def _past_grace(order: Order) -> bool:
    sent = order.submitted_at or order.created_at
    grace = settings.EXCHANGE_TIMEOUT_SECONDS + 0.5 + settings.ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS
    return timezone.now() - sent > timedelta(seconds=grace)


def protective_refresh(*, order_id: int) -> str:
    """One look at a protective order: live, fired (its fill booked — the position closed
    by its stop), cancelled; an unclear one resolved by its client id."""
    order = _load(order_id)
    if order is None or order.is_terminal:
        return order.status if order else ""
    if order.status == Order.Status.PENDING:
        return protective_place(order_id=order_id)
    if order.cancel_requested_at is not None:
        return protective_cancel(order_id=order_id)
    gateway = _gateway(order)
    try:
        state = gateway.find_protective(
            symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
        )
    except GatewayError as exc:
        logger.info(_log(order, "protective_lookup_failed", error=str(exc)[:200]))
        return order.status
    Order.objects.filter(pk=order.pk).update(lookup_count=F("lookup_count") + 1)
    if state is not None:
        status = ledger.order_apply_state(order=order, state=state, book_positions=_book(order))
        if status in LIVE_STATUSES:
            _supersede(order)
        return status
    if order.status in LIVE_STATUSES:
        # Acknowledged once and gone now without a trace: not guarding anything any more.
        _mark(order, Order.Status.UNKNOWN, "the exchange no longer has this protective order")
        return Order.Status.UNKNOWN
    if not _past_grace(order):
        return order.status
    if order.submit_count >= MAX_SUBMITS:
        _refused(order, f"never received by the exchange after {order.submit_count} sends")
        return Order.Status.REJECTED
    return protective_place(order_id=order_id, resend=True)


def protection_sweep(*, limit: int = 500) -> dict[str, int]:
    """Everything about protective orders not finished in-process: PENDING ones placed
    (a worker killed between a fill and its stop), unclear ones resolved, requested cancels
    retried, live ones looked at (a stop that fired is booked). One sweep at a time per
    process; rows are claimed by conditional updates, so two processes never double-send."""
    counts = {"placed": 0, "resolved": 0, "cancelled": 0, "looked": 0}
    if not _sweep_lock.acquire(blocking=False):
        return counts
    try:
        orphan_before = timezone.now() - timedelta(seconds=PENDING_ORPHAN_SECONDS)
        rows = list(
            Order.objects.exclude(protection="")
            .exclude(status__in=Order.TERMINAL_STATUSES)
            .filter(~Q(status=Order.Status.PENDING) | Q(created_at__lt=orphan_before))
            .order_by("id")
            .values_list("pk", "status", "cancel_requested_at")[:limit]
        )
        for order_id, status, cancel in rows:
            try:
                if status == Order.Status.PENDING:
                    counts["placed"] += protective_place(order_id=order_id) in LIVE_STATUSES
                elif cancel is not None:
                    counts["cancelled"] += protective_cancel(order_id=order_id) == Order.Status.CANCELLED
                elif status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN):
                    counts["resolved"] += protective_refresh(order_id=order_id) != status
                else:
                    now = time.monotonic()
                    if now - _last_look.get(order_id, -LOOK_EVERY_SECONDS) < LOOK_EVERY_SECONDS:
                        continue
                    _last_look[order_id] = now
                    protective_refresh(order_id=order_id)
                    counts["looked"] += 1
            except Exception:
                logger.exception("event=protection_sweep_failed order_id=%s", order_id)
        live = {order_id for order_id, *_ in rows}
        for gone in [k for k in _last_look if k not in live]:
            del _last_look[gone]
    finally:
        _sweep_lock.release()
    return counts


# --- reconcile ------------------------------------------------------------------------------------


def _latest_entry(*, account_id: int, strategy_id: int, symbol: str, long: bool) -> Order | None:
    return (
        Order.objects.filter(
            account_id=account_id,
            strategy_id=strategy_id,
            symbol=symbol,
            protection="",
            purpose=Order.Purpose.OPEN,
            side="buy" if long else "sell",
            filled_qty__gt=0,
        )
        .select_related("signal")
        .order_by("-id")
        .first()
    )


def protection_gaps(*, account) -> list[dict]:
    """Per strategy position on `account` whose latest entry asked for protection: each kind
    whose live protective orders do not cover the position exactly (missing, smaller or
    larger). Each gap: strategy_id, symbol, kind, held, covered, entry (the Order)."""
    gaps = []
    positions = Position.objects.filter(account=account, strategy__isnull=False).exclude(qty=0)
    for position in positions:
        long = position.qty > 0
        entry = _latest_entry(account_id=account.pk, strategy_id=position.strategy_id, symbol=position.symbol,
                              long=long)  # fmt: skip
        if entry is None or not entry.protection_spec:
            continue
        # Live ones cover; one being placed right now (seconds old) is counted too, so a
        # reconcile running between a fill and its stop's placement reports no false gap.
        recent = timezone.now() - timedelta(seconds=30)
        live = Order.objects.filter(
            Q(status__in=LIVE_STATUSES)
            | Q(status__in=[Order.Status.PENDING, Order.Status.SUBMITTING], created_at__gte=recent),
            account=account,
            strategy_id=position.strategy_id,
            symbol=position.symbol,
            side="sell" if long else "buy",
            cancel_requested_at=None,
        )
        for kind in entry.protection_spec:
            covered = sum((o.requested_qty for o in live.filter(protection=kind)), Decimal("0"))
            if covered != abs(position.qty):
                gaps.append(
                    {
                        "strategy_id": position.strategy_id,
                        "symbol": position.symbol,
                        "kind": kind,
                        "held": abs(position.qty),
                        "covered": covered,
                        "entry": entry,
                        "average": position.avg_price or entry.avg_price,
                    }
                )
    return gaps


def protection_restore(*, gap: dict) -> str:
    """Place one protective order covering the whole position (reconcile --fix), then cancel
    the others of its kind on that position once it is live. Returns its status."""
    entry: Order = gap["entry"]
    kind = gap["kind"]
    now = timezone.now()
    with transaction.atomic():
        Order.objects.select_for_update().get(pk=entry.pk)
        generation = 1 + max(
            Order.objects.filter(protects_id=entry.pk, protection=kind).values_list("generation", flat=True),
            default=0,
        )
        leg = 1 + max(Order.objects.filter(signal_id=entry.signal_id).values_list("leg", flat=True), default=100)
        level = entry.protection_spec[kind]
        long = entry.side == "buy"
        trigger = trail_percent = trail_distance = None
        if "price" in level:
            trigger = Decimal(level["price"])
        elif kind == "trailing_stop":
            trail_percent = Decimal(level["percent"]) if "percent" in level else None
            trail_distance = Decimal(level["distance"]) if "distance" in level else None
        else:
            ratio = Decimal(level["percent"]) / Decimal(100)
            trigger = gap["average"] * (1 + (-ratio if (kind == "stop_loss") == long else ratio))
        order = Order.objects.create(
            signal_id=entry.signal_id,
            strategy_id=entry.strategy_id,
            account_id=entry.account_id,
            leg=leg,
            purpose=Order.Purpose.CLOSE,
            protection=kind,
            protects_id=entry.pk,
            generation=generation,
            client_order_id=ledger.protective_client_id(entry, kind, generation),
            symbol=entry.symbol,
            side="sell" if long else "buy",
            order_type="market",
            reduce_only=True,
            requested_qty=gap["held"],
            trigger_price=trigger,
            trail_percent=trail_percent,
            trail_distance=trail_distance,
            signal_price=trigger or gap["average"],
            reason="placed by reconcile --fix",
            created_at=now,
        )
    status = protective_place(order_id=order.pk)
    if status in LIVE_STATUSES:
        others = (
            Order.objects.filter(
                account_id=entry.account_id,
                strategy_id=entry.strategy_id,
                symbol=entry.symbol,
                protection=kind,
                status__in=LIVE_STATUSES,
            )
            .exclude(pk=order.pk)
            .values_list("pk", flat=True)
        )
        for other in list(others):
            Order.objects.filter(pk=other).update(cancel_requested_at=timezone.now())
            protective_cancel(order_id=other, reason="replaced by reconcile --fix")
    return status
