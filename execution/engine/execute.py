"""Execute: one run of one signal through the stages, in order.

    claim ──► halt check ──► plan (legs, leverage) ──► send each leg ──► follow ──► finish
    (claim)   (send.halt_reason)  (plan)               (send)          (follow)    (claim.finish)

1. Claim the signal (claim.claim): a redelivered or duplicated task does nothing, and a
   signal waits while an earlier one of its market is pending.
2. Re-check the kill switches, plan the legs, and write one `Order` row per leg with its
   deterministic client order id (unique per account in the database) — on PostgreSQL the
   first leg's send writes them, in the statement that claims it.
3. Only then talk to the exchange, outside any transaction (send).
4. Follow each acknowledged order to a final state (follow), recording fills (ledger).
5. Finish the signal (claim.finish) and wake the next one waiting behind it.
A worker that dies mid-way leaves the signal PROCESSING with a lease; when the lease
expires the sweeper re-queues it and the next run resumes each order where it stood.
"""

from __future__ import annotations

import logging
from typing import Protocol

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from execution.exchanges import GatewayError, Misconfigured, gateway_for
from execution.models import Order
from signals import outbox
from signals.models import Signal
from strategies.validation import strategy_settings_errors

from . import claim as claims
from . import protect, send, statements  # noqa: F401  (protect: registers the ledger's protection listener)
from .claim import LeaseLost, extend_lease, finish, leave_for_later
from .fanout import signal_fan_out
from .follow import order_follow
from .plan import NothingToDo, PlanError, legs_as_orders, protection_attach, signal_plan
from .run import RetryLater, Run

logger = logging.getLogger("tvtrader.execution")


class Host(Protocol):
    """Where a run lives. The worker (engine.worker) follows acknowledged orders elsewhere
    and runs what waited for a finished signal itself; `Inline` (a direct call: scripts,
    tests) follows here by polling and wakes the next signal through the broker."""

    #: Record an order's acknowledgement later, off the sending path (the worker's pool threads).
    defer_replies: bool

    def handoff(self, run: Run, order: Order) -> bool:
        """Follow `order` (acknowledged, not final; or with `run.pending_reply` to record) and
        carry the run on once it is final. False: follow it here."""

    def finished(self, signal: Signal) -> None:
        """`signal` is final: start what waited for it."""

    def retry(self, run: Run, seconds: float, reason: str) -> None:
        """The run stopped on something temporary (the database, the exchange): try it again
        in `seconds` (its lease is kept meanwhile)."""

    def fanned_out(self, signal_ids: list[int]) -> None:
        """An alert was fanned out (engine.fanout): start each of its children now."""


class Inline:
    defer_replies = False

    def handoff(self, run: Run, order: Order) -> bool:
        return False

    def finished(self, signal: Signal) -> None:
        outbox.wake_next(signal)

    def retry(self, run: Run, seconds: float, reason: str) -> None:
        return None  # the lease runs out and the sweeper brings the signal back

    def fanned_out(self, signal_ids: list[int]) -> None:
        for signal_id in signal_ids:  # one after the other here; each stands alone
            try:
                execute(signal_id, host=self)
            except Exception:
                logger.exception("event=fan_out_child_failed signal=%s (the sweeper brings it back)", signal_id)


INLINE = Inline()


def execute(signal_id: int, *, host: Host = INLINE, phase=None) -> claims.Claimed:
    """Claim `signal_id` and take it as far as it goes now. Returns what the claim found
    (when it did not take, why the signal waits)."""
    claimed = claims.claim(signal_id)
    run = claimed.run
    if run is None:
        return claimed
    run.send_phase = phase
    if not run.first:
        run.end_send_phase()  # a resumed run follows (a resend after "never received" is rare)
    run_stages(run, host)
    return claimed


def run_stages(run: Run, host: Host = INLINE) -> None:
    """Take a claimed run as far as it goes now; whatever happens, never leave it half-way
    without a lease (the sweeper's way back) or a final status."""
    try:
        _stages(run, host)
    except LeaseLost:
        logger.warning(run.log("signal_lease_lost", note="another worker owns it now; stopping"))
        return
    except RetryLater as exc:
        leave_for_later(run, 15)
        logger.warning(run.log("signal_retry_later", reason=str(exc)[:200]))
        host.retry(run, 2.0, "exchange")
        return
    except (OperationalError, InterfaceError) as exc:
        # The database went away mid-run: nothing can be recorded now, and the lease stays
        # ours. The worker resumes the run as soon as the database answers again.
        logger.warning(run.log("signal_db_error", error=type(exc).__name__, detail=str(exc)[:200]))
        close_old_connections()
        host.retry(run, 0.5, "database")
        return
    except Exception as exc:
        logger.exception(run.log("signal_execution_error", error=type(exc).__name__))
        in_flight = _legs(run.signal).exclude(status__in=[*Order.TERMINAL_STATUSES, Order.Status.PENDING]).exists()
        if in_flight:
            # An order may be at the exchange: keep the signal for a later run to resume.
            leave_for_later(run, 15)
            host.retry(run, 15.0, "error")
        else:
            finish(run, Signal.Status.FAILED, f"internal error during execution: {type(exc).__name__}: {exc}")
    if run.handed_off:
        return  # whoever follows its order carries the run on
    if not run.signal.is_terminal:  # finish() sets it when this run finished the signal
        run.signal.refresh_from_db(fields=["status"])
    if run.signal.is_terminal:
        host.finished(run.signal)


def _legs(signal: Signal):
    """The signal's own legs: its protective orders outlive it and are not part of its run."""
    return signal.orders.filter(protection="")


def _stages(run: Run, host: Host) -> None:
    signal, strategy, account = run.signal, run.strategy, run.account
    run.handed_off = False
    reason = send.halt_reason(run)
    if reason:
        _legs(signal).filter(status=Order.Status.PENDING).update(status=Order.Status.CANCELLED, reason=reason)
        if run.first or not _legs(signal).exclude(status__in=Order.TERMINAL_STATUSES).exists():
            finish(run, Signal.Status.BLOCKED, reason)
            return
    if signal.subscription_id is None and strategy.fans_out:
        host.fanned_out(signal_fan_out(run))
        return
    if account is None:
        finish(run, Signal.Status.FAILED, "this strategy has no exchange account configured")
        return
    try:
        gateway = gateway_for(account, scratch=signal.is_test)
    except Misconfigured as exc:
        finish(run, Signal.Status.FAILED, f"account {account.label}: {exc}")
        return
    run.gateway = gateway

    # Orders exist only after a first claim; the first run has none to look for.
    orders = [] if run.first else list(_legs(signal).order_by("leg"))
    if not orders:
        problems = strategy_settings_errors(strategy)
        if problems:
            # Settings written around the validator (e.g. straight into the database).
            finish(run, Signal.Status.FAILED, "strategy settings refused: " + "; ".join(problems.values()))
            return
        try:
            legs = signal_plan(
                signal=signal,
                strategy=strategy,
                account=account,
                gateway=gateway,
                positions=run.positions if run.book_positions else {},
            )
        except NothingToDo as exc:
            finish(run, Signal.Status.SKIPPED, f"nothing to do: {exc}")
            return
        except (PlanError, Misconfigured, ValueError) as exc:
            finish(run, Signal.Status.FAILED, str(exc))
            return
        orders = legs_as_orders(signal=signal, strategy=strategy, account=account, legs=legs)
        try:
            protection_attach(signal=signal, strategy=strategy, account=account, orders=orders)
        except PlanError as exc:
            finish(run, Signal.Status.FAILED, str(exc))
            return
        logger.info(
            run.log(
                "orders_planned",
                legs=";".join(f"{o.side} {o.requested_qty.normalize()} {o.symbol} {o.order_type}" for o in orders),
            )
        )
        # On PostgreSQL the legs of a first run are written by the first leg's send, in the
        # statement that claims it (see send.order_submit); elsewhere now.
        if run.first and connection.vendor == "postgresql":
            run.unsaved_legs = orders
        else:
            statements.orders_insert(orders)
        extend_lease(run)
        if strategy.leverage and any(o.purpose == Order.Purpose.OPEN for o in orders):
            send.legs_save_pending(run)  # written before anything is said to the exchange
            for symbol in {o.symbol for o in orders}:
                try:
                    gateway.set_leverage(symbol=symbol, leverage=int(strategy.leverage))
                except GatewayError as exc:
                    # Trading at whatever leverage the exchange has set is not what the
                    # trader configured: refuse, before anything is sent.
                    reason = f"could not set leverage {strategy.leverage}x on {symbol}: {exc}"
                    _legs(signal).filter(status=Order.Status.PENDING).update(
                        status=Order.Status.CANCELLED, reason=f"not sent: {reason}", closed_at=timezone.now()
                    )
                    finish(run, Signal.Status.FAILED, reason)
                    return

    previous: Order | None = None
    for order in orders:
        if previous is not None and previous.purpose == Order.Purpose.CLOSE and order.purpose == Order.Purpose.OPEN:
            if not previous.is_terminal:
                break  # the close is still being resolved: the open leg waits for the next run
            if previous.status != Order.Status.FILLED:
                Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
                    status=Order.Status.CANCELLED,
                    reason="not sent: the closing leg before it did not fill",
                    closed_at=timezone.now(),
                )
                order.refresh_from_db()
        # A final order never changes again (the ledger only moves orders forward): one just
        # loaded needs no second read.
        fresh = order.status == Order.Status.PENDING or order.is_terminal
        if _order_drive(run, gateway, order, host, fresh=fresh) == "handed_off":
            run.handed_off = True
            return
        previous = order

    if not all(o.is_terminal for o in orders):  # else they are as just read: final
        orders = list(_legs(signal).order_by("leg"))
    if any(not o.is_terminal for o in orders):
        # Unresolved: left leased; the worker tries again shortly, else the sweeper does.
        logger.info(
            run.log("signal_waiting_on_orders", orders=",".join(f"{o.client_order_id}:{o.status}" for o in orders))
        )
        host.retry(run, 15.0, "unresolved order")
        return
    finish_from_orders(run, orders)


def _order_drive(run: Run, gateway, order: Order, host: Host, *, fresh: bool) -> str:
    """Take an order as far as this run can: "done" (final), "handed_off" (the host follows
    it), "unknown" (still unresolved), "followed" (followed here to its end)."""
    for _ in range(send.MAX_SUBMITS * 3):
        if not fresh:
            order.refresh_from_db()
        fresh = False
        if order.is_terminal:
            return "done"
        if order.status == Order.Status.PENDING:
            reply = send.order_submit(run, gateway, order, defer_reply=host.defer_replies)
            if reply is not None:
                run.pending_reply = reply
                if host.handoff(run, order):
                    return "handed_off"
                send.reply_record(run, reply)
                run.pending_reply = None
        elif order.status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN):
            if not send.order_resolve(run, gateway, order):
                return "unknown"  # still unknown: left for a later run
        elif order.status in (Order.Status.OPEN, Order.Status.PARTIALLY_FILLED):
            if host.handoff(run, order):
                return "handed_off"
            order_follow(run, gateway, order)
            return "followed"
    return "gave_up"


def finish_from_orders(run: Run, orders: list[Order]) -> None:
    fills = [o for o in orders if o.filled_qty > 0]
    first = min((o.first_fill_at for o in fills if o.first_fill_at), default=None)
    last = max((o.last_fill_at for o in fills if o.last_fill_at), default=None)
    # Written with the final status, in the same statement (claim.finish).
    run.fill_times = (first, last)
    if orders and all(o.status == Order.Status.FILLED for o in orders):
        finish(run, Signal.Status.EXECUTED)
    elif fills:
        reasons = "; ".join(
            f"leg {o.leg}: {o.get_status_display().lower()}" + (f" ({o.reason})" if o.reason else "")
            for o in orders
            if o.status != Order.Status.FILLED
        )
        finish(run, Signal.Status.PARTIAL, f"partly executed: {reasons}")
    else:
        reasons = "; ".join(o.reason for o in orders if o.reason) or "no order filled"
        never_sent = all(o.submit_count == 0 for o in orders)
        if never_sent and any(
            o.status == Order.Status.CANCELLED and ("blocked" in o.reason or "breaker:" in o.reason) for o in orders
        ):
            # A kill switch engaged after the claim stopped every leg before it left.
            finish(run, Signal.Status.BLOCKED, reasons)
        else:
            finish(run, Signal.Status.FAILED, reasons if never_sent else f"order rejected: {reasons}")
