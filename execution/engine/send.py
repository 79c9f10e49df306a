"""Send: one order to the venue, exactly once, and what to do when the answer is unclear.

An order is claimed (PENDING → SUBMITTING, only while the run owns the signal) inside the
gateway's `before_send` hook, right after a rate-limit slot is taken and right before the
request is signed and sent, so nothing slow sits between the slot and the venue. The
outcome is recorded: acknowledged (the ledger applies the reply), rejected (once, with the
venue's reason), or unknown (timeout, 5xx, dropped connection) — an unknown order is
resolved by looking it up by its client order id, and resent with the same id only once
the venue has kept saying "not found" past a grace period. Never a blind retry.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from execution import events
from execution.exchanges import (
    Gateway,
    GatewayError,
    Misconfigured,
    OrderRejected,
    OrderState,
    RateLimited,
    SendAborted,
)
from execution.models import Order
from execution.ratelimit import order_slot_acquire, slot_is_fresh
from signals.models import Signal
from strategies.halts import strategy_halt_reason
from strategies.models import TradingControl

from . import breakers, ledger, statements
from .claim import LeaseLost, extend_lease, leave_for_later, owned
from .run import RetryLater, Run

logger = logging.getLogger("tvtrader.execution")

MAX_SUBMITS = 3
# The reason recorded when the venue answered a create with its rate-limit refusal (HTTP 429 or
# the venue's own code): a clear answer that nothing was booked, resolved by a lookup without
# the long "not found" grace (see order_resolve).
RATE_LIMITED = "refused by the exchange's rate limit"
RESOLVE_BACKOFF = (0.1, 0.25, 0.5, 1, 1, 2, 2, 3, 3, 5)


def halt_reason(run: Run, *, fresh: bool = False) -> str:
    """The kill-switch rule (strategies.halts) for this run, from the switches read with the
    claim, or read again when `fresh`. Prefixed for the trader: this is the engine speaking."""
    strategy, account = run.strategy, run.account
    if fresh:
        strategy.refresh_from_db(fields=["halted", "enabled"])
        if account is not None:
            account.refresh_from_db(fields=["halted"])
        subscription = getattr(strategy, "subscription", None)  # a fanned-out alert's run
        if subscription is not None:
            subscription.refresh_from_db(fields=["halted", "enabled"])
        run.global_halted = TradingControl.is_halted()
    flatten = run.signal.origin == Signal.Origin.FLATTEN and run.signal.action == "close_all"
    reason = strategy_halt_reason(strategy, global_halted=run.global_halted, operator_flatten=flatten)
    return f"blocked at execution: {reason}" if reason else ""


def legs_save_pending(run: Run) -> None:
    """Write legs planned but not written yet (see execute) as PENDING: every path that ends
    without the first send writing them leaves them on record all the same."""
    if run.unsaved_legs:
        legs, run.unsaved_legs = run.unsaved_legs, None
        statements.orders_insert(legs)


def switches_recheck(run: Run, order: Order, *, resend: bool = False) -> bool:
    """Read the kill switches again; cancel `order` (never sent, or — `resend` — proven never
    received) and return True if engaged."""
    legs_save_pending(run)
    reason = halt_reason(run, fresh=True)
    if reason:
        statuses = [Order.Status.UNKNOWN, Order.Status.SUBMITTING] if resend else [Order.Status.PENDING]
        Order.objects.filter(pk=order.pk, status__in=statuses).update(
            status=Order.Status.CANCELLED,
            reason=f"never received by the exchange; not resent: {reason}" if resend else f"not sent: {reason}",
            closed_at=timezone.now(),
        )
    return bool(reason)


def breaker_refused(run: Run, order: Order, account) -> bool:
    """The breakers' pre-send check (engine.breakers): cancel `order`, never sent, when it would
    cross a limit by itself. Test signals and an operator's flatten are never refused."""
    if run.signal.is_test or run.signal.origin == Signal.Origin.FLATTEN:
        return False
    reason = breakers.order_refusal(strategy=run.strategy, account=account, order=order)
    if not reason:
        return False
    legs_save_pending(run)
    Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
        status=Order.Status.CANCELLED, reason=f"not sent: {reason}", closed_at=timezone.now()
    )
    run.recheck = True  # its kill switch is engaged now: every later leg reads the switches
    logger.warning(run.log("order_refused_by_breaker", order=order.client_order_id, reason=reason))
    return True


def order_submit(run: Run, gateway: Gateway, order: Order, *, defer_reply: bool = False, resend: bool = False):
    """Send a PENDING order (or, with `resend`, an UNKNOWN one proven never received: see
    order_resolve). With `defer_reply`, a successful reply is returned (order, state, sent
    at, acknowledged at) for the caller to record later instead of recorded here; every
    other outcome is recorded here."""
    account = run.account if run.strategy.account_id == order.account_id else order.account
    # The switches were read with the signal at claim time; read them again when time has
    # passed since (a later leg, a resumed run), so a switch engaged meanwhile still holds.
    if (resend or run.recheck or time.monotonic() - run.claimed_mono > 1.0) and switches_recheck(
        run, order, resend=resend
    ):
        return None
    if not resend and breaker_refused(run, order, account):
        return None
    sent: dict[str, Any] = {}

    def before_send() -> None:
        """Runs inside the gateway right before the request is signed and sent: take a slot
        in the venue account's shared rate bucket (keeping the lease alive while waiting),
        then claim the order and check ownership in one statement. A crash after the claim
        leaves the order SUBMITTING: resolved by lookup, never resent blindly."""
        waited = time.monotonic()
        while not order_slot_acquire(
            bucket_key=account.rate_limit_key,
            per_second=account.max_orders_per_second,
            timeout=max(5.0, settings.SIGNAL_LEASE_SECONDS / 3),
        ):
            extend_lease(run, force=True)
        if time.monotonic() - waited > 0.5:
            extend_lease(run, force=True)
            if switches_recheck(run, order, resend=resend):  # engaged while it waited: never sent
                raise SendAborted("kill switch engaged while waiting for a rate-limit slot")
        if resend:
            # The last look, at the moment of sending: an original booked late (after its
            # request timed out) is adopted here, never doubled — whatever the time since
            # the decision to resend (a rate-limit wait, a stalled process).
            state, failed = _lookup(run, gateway, order)
            if failed:
                raise SendAborted("the last lookup before the resend failed; looking again later")
            if state is not None:
                raise FoundMeanwhile(state)
        now = timezone.now()
        if order.pk is None:
            # The first leg of a first run: write the legs with this one claimed, in one
            # statement that also proves this run still owns the signal.
            legs, run.unsaved_legs = run.unsaved_legs, None
            if not statements.orders_insert_sending_first(orders=legs, signal_id=run.pk, token=run.token, now=now):
                raise LeaseLost(run.pk)
            sent["at"] = now
            _fresh_slot(account)
            return
        claim = statements.order_claim_for_resend if resend else statements.order_claim_for_send
        if not claim(order_id=order.pk, signal_id=run.pk, token=run.token, now=now, sends=order.submit_count):
            if not owned(run).exists():
                raise LeaseLost(run.pk)
            raise SendAborted("the order moved on meanwhile")
        order.status, order.submit_count, order.submitted_at = Order.Status.SUBMITTING, order.submit_count + 1, now
        sent["at"] = now
        _fresh_slot(account)

    def _fresh_slot(account) -> None:
        """The claim's round trip stalled past the rate guard (a busy machine): take another
        slot, so the request never leaves on a stale one (execution/ratelimit.py)."""
        for _ in range(3):
            if slot_is_fresh():
                return
            order_slot_acquire(bucket_key=account.rate_limit_key, per_second=account.max_orders_per_second, timeout=5)

    try:
        state = gateway.create_order(
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            qty=order.requested_qty,
            price=order.limit_price,
            reduce_only=order.reduce_only,
            client_order_id=order.client_order_id,
            signal_price=order.signal_price,
            before_send=before_send,
        )
    except LeaseLost:
        raise
    except FoundMeanwhile as exc:
        ledger.order_apply_state(order=order, state=exc.state, book_positions=run.book_positions)
        return None
    except SendAborted as exc:
        logger.info(run.log("order_not_sent", order=order.client_order_id, reason=str(exc)))
        return None
    except OrderRejected as exc:
        if "at" not in sent:  # refused before anything left (e.g. ccxt's own checks)
            legs_save_pending(run)
            mark_rejected(run, order, str(exc))
            return None
        record_sent(run, order, sent["at"])
        if order.submit_count > 1:
            # A resend refused (e.g. "duplicate client id") may mean the first one landed.
            mark_unknown(run, order, f"resend refused ({exc}); looking it up")
            return None
        mark_rejected(run, order, str(exc))
        count_error(gateway, "rejected")
        return None
    except Misconfigured as exc:
        legs_save_pending(run)
        if "at" in sent:
            record_sent(run, order, sent["at"])
        mark_rejected(run, order, f"account or symbol misconfigured: {exc}")
        count_error(gateway, "misconfigured")
        return None
    except GatewayError as exc:  # TemporaryError, RateLimited and anything unclassified
        if "at" not in sent:
            # Failed before the hook ran (e.g. markets could not be loaded): nothing was sent
            # and the order is still PENDING; the sweeper brings the signal back.
            legs_save_pending(run)
            logger.warning(run.log("order_not_sent", order=order.client_order_id, reason=str(exc)[:200]))
            raise RetryLater(str(exc)) from exc
        record_sent(run, order, sent["at"])
        if isinstance(exc, RateLimited):
            mark_unknown(run, order, f"{RATE_LIMITED}: {exc}")
        else:
            mark_unknown(run, order, f"outcome unknown after: {exc}")
        count_error(gateway, type(exc).__name__)
        return None
    if defer_reply:
        # Recording the acknowledgement is the follower's first job (see worker).
        return (order, state, sent["at"], timezone.now())
    record_sent(run, order, sent["at"])
    ledger.order_apply_state(order=order, state=state, book_positions=run.book_positions, reply=True)
    return None


def reply_record(run: Run, reply) -> None:
    """Record a deferred acknowledgement (order_submit with `defer_reply`). Until then the
    order reads SUBMITTING, which a resumed run (after a crash) resolves by looking it up,
    never by resending blindly."""
    order, state, sent_at, acked_at = reply
    record_sent(run, order, sent_at)
    ledger.order_apply_state(order=order, state=state, book_positions=run.book_positions, reply=True, acked_at=acked_at)


def record_sent(run: Run, order: Order, sent_at) -> None:
    record_sent_for(signal_id=run.pk, strategy_key=run.signal.strategy_key, order=order, sent_at=sent_at)


def record_sent_for(*, signal_id: int, strategy_key: str, order: Order, sent_at) -> None:
    Signal.objects.filter(pk=signal_id, sent_at__isnull=True).update(sent_at=sent_at)
    logger.info(
        "event=order_sent strategy=%s signal=%s order=%s side=%s qty=%s symbol=%s type=%s attempt=%s",
        strategy_key or "-",
        signal_id,
        order.client_order_id,
        order.side,
        order.requested_qty.normalize(),
        order.symbol,
        order.order_type,
        order.submit_count,
    )


def count_error(gateway: Gateway, kind: str) -> None:
    events.emit(events.exchange_error, exchange=getattr(gateway, "name", "?"), kind=kind)


def mark_rejected(run: Run, order: Order, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(
        status=Order.Status.REJECTED, reason=reason[:2000], closed_at=timezone.now()
    )
    logger.warning(run.log("order_rejected", order=order.client_order_id, reason=reason[:300]))
    if not run.signal.is_test:
        breakers.order_final(order.pk)


def mark_unknown(run: Run, order: Order, reason: str) -> None:
    Order.objects.filter(pk=order.pk).update(status=Order.Status.UNKNOWN, reason=reason[:2000])
    logger.warning(run.log("order_unknown", order=order.client_order_id, reason=reason[:300]))


def _lookup(run: Run, gateway: Gateway, order: Order) -> tuple[OrderState | None, bool]:
    """(the order's state or None when the venue says "not found", whether the lookup failed)."""
    Order.objects.filter(pk=order.pk).update(lookup_count=F("lookup_count") + 1)
    try:
        state = gateway.find_order(
            symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
        )
    except GatewayError as exc:
        logger.info(run.log("order_lookup_failed", order=order.client_order_id, error=str(exc)[:200]))
        return None, True
    if state is not None:
        logger.info(run.log("order_found", order=order.client_order_id, status=state.status))
    return state, False


class FoundMeanwhile(SendAborted):
    """The last lookup before a resend found the order: adopted, not resent."""

    def __init__(self, state: OrderState) -> None:
        super().__init__("found at the exchange right before the resend")
        self.state = state


def order_resend(run: Run, gateway: Gateway, order: Order) -> bool:
    """Resend an order the venue never received, with the same client order id — after one
    more lookup right before the request leaves (never on an old "not found"). True when
    the order left UNKNOWN (found then, or resent: acknowledged, refused or unknown again)."""
    order.refresh_from_db()
    sends = order.submit_count
    order_submit(run, gateway, order, resend=True)
    order.refresh_from_db()
    return order.submit_count > sends or order.status not in (Order.Status.UNKNOWN, Order.Status.SUBMITTING)


def _not_found_grace(gateway: Gateway) -> float:
    if gateway.client_id_always_unique:
        return settings.ORDER_NOT_FOUND_GRACE_SECONDS
    # The venue would accept a reused id once the first order is no longer open, so "not
    # found" must hold much longer before a resend is safe.
    return settings.ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS


def order_resolve(run: Run, gateway: Gateway, order: Order) -> bool:
    """Find out what happened to an order whose creation had no clear answer. Returns True
    when the order left UNKNOWN: found (adopted), or proven never received and resent.

    "Never received" is proven only by the venue saying "not found" for the whole grace
    period, counted from when our request could no longer reach it (its send plus the HTTP
    timeout: a request still in flight may be booked late), with a lookup failing (a 503)
    proving nothing — and the resend itself looks once more right before it leaves."""
    order.refresh_from_db(fields=["status", "reason", "submitted_at", "not_found_since", "submit_count"])
    if order.reason.startswith(RATE_LIMITED):
        # The venue answered "too many requests": a refusal before booking, not a request
        # lost in flight. One lookup confirms it, the resend's own last lookup confirms it
        # again, after a second: the window most venues count in.
        grace, in_flight_until = 1.0, order.submitted_at or timezone.now()
    else:
        grace = _not_found_grace(gateway)
        in_flight_until = (order.submitted_at or timezone.now()) + timedelta(
            seconds=settings.EXCHANGE_TIMEOUT_SECONDS + 0.5
        )
    # The "not found" clock lives on the order, so a resolution spread over several runs (the
    # sweeper's) still reaches the grace; a resend restarts it.
    first_not_found = order.not_found_since
    for delay in RESOLVE_BACKOFF:
        extend_lease(run)
        state, failed = _lookup(run, gateway, order)
        if failed:
            time.sleep(delay)
            continue
        if state is not None:
            ledger.order_apply_state(order=order, state=state, book_positions=run.book_positions)
            return True
        now = timezone.now()
        if now >= in_flight_until:
            if first_not_found is None:
                first_not_found = now
                Order.objects.filter(pk=order.pk, not_found_since__isnull=True).update(not_found_since=now)
            waited = (now - first_not_found).total_seconds()
            if waited >= grace:
                order.refresh_from_db()
                if order.submit_count >= MAX_SUBMITS:
                    mark_rejected(
                        run, order, f"the exchange never received this order after {order.submit_count} attempts"
                    )
                    return True
                logger.warning(
                    run.log("order_not_received", order=order.client_order_id, not_found_for_s=round(waited, 1))
                )
                return order_resend(run, gateway, order)
            time.sleep(min(delay, max(0.05, grace - waited)))
        else:
            time.sleep(min(delay, max(0.05, (in_flight_until - now).total_seconds())))
    # Still unknown: keep the signal leased briefly; the sweeper re-runs it. It keeps blocking
    # the signals behind it (the order may well exist), so after a few runs say so loudly.
    Order.objects.filter(pk=order.pk, status=Order.Status.SUBMITTING).update(status=Order.Status.UNKNOWN)
    leave_for_later(run, 15)
    order.refresh_from_db()
    if run.token >= 4 and not order.reason.startswith("needs an operator"):
        Order.objects.filter(pk=order.pk).update(
            reason=f"needs an operator: still unknown after {run.token} runs ({order.reason})"[:2000]
        )
        events.emit(
            events.order_needs_operator,
            alert=run.signal,
            order=order,
            text=f"⚠️ {run.signal.strategy_key}: order {order.client_order_id} ({order.side} {order.symbol}) is "
            f"still unknown at the exchange after {run.token} runs; later alerts for this market wait "
            "behind it. Check the exchange, then run `manage.py reconcile`.",
        )
    return False
