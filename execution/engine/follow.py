"""Follow: an acknowledged order to its final state — fills recorded as they come, and a
limit order left open past the strategy's timeout cancelled (what filled is kept)."""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from execution.exchanges import Gateway, GatewayError
from execution.models import Order

from . import ledger, pacing
from .claim import extend_lease, leave_for_later, release
from .run import Run

logger = logging.getLogger("tvtrader.execution")

FOLLOW_MAX_SECONDS = 120
# The first look at an acknowledged order waits a little: in a burst, every thread polling
# at once would hold the interpreter while other alerts' orders are still to be sent.
FOLLOW_BACKOFF = (0.15, 0.15, 0.2, 0.3, 0.5, 1, 1, 2)
# A follower spends at most this long on one signal before putting it at the back of the
# followers' queue, so a few resting limit orders cannot keep every other signal waiting.
FOLLOW_SLICE_SECONDS = 3.0


def order_follow(run: Run, gateway: Gateway, order: Order) -> None:
    """Poll an acknowledged order to a final state; cancel a limit order past its timeout."""
    run.end_send_phase()
    strategy = run.strategy
    started = time.monotonic()
    age = (timezone.now() - order.submitted_at).total_seconds() if order.submitted_at else 0.0
    # Back-off by the order's age, so a follow-up resumed later does not start polling fast again.
    step, elapsed = 0, FOLLOW_BACKOFF[0]
    while step < len(FOLLOW_BACKOFF) - 1 and elapsed + FOLLOW_BACKOFF[step + 1] <= age:
        step += 1
        elapsed += FOLLOW_BACKOFF[step]
    for i in range(step, step + 10_000):
        if i == 0 and order.submitted_at is not None:
            # The first look comes FOLLOW_BACKOFF[0] after the send (a handed-off run has
            # already waited most of it in the queue).
            time.sleep(max(0.0, FOLLOW_BACKOFF[0] - age))
        pacing.sends_first()
        order.refresh_from_db()
        if order.is_terminal:
            return
        age = (timezone.now() - (order.submitted_at or timezone.now())).total_seconds()
        try:
            if order.order_type == "limit" and age >= strategy.limit_timeout_seconds:
                state = gateway.cancel_order(
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    exchange_order_id=order.exchange_order_id,
                )
                logger.info(
                    run.log("order_timeout_cancel", order=order.client_order_id, filled=order.filled_qty.normalize())
                )
            else:
                state = gateway.find_order(
                    symbol=order.symbol,
                    client_order_id=order.client_order_id,
                    exchange_order_id=order.exchange_order_id,
                )
        except GatewayError as exc:
            logger.info(run.log("order_poll_failed", order=order.client_order_id, error=str(exc)[:200]))
            state = None
        if state is not None:
            ledger.order_apply_state(order=order, state=state, book_positions=run.book_positions)
            order.refresh_from_db()
            if order.is_terminal:
                return
        if time.monotonic() - started > FOLLOW_MAX_SECONDS:
            remaining = strategy.limit_timeout_seconds - age if order.order_type == "limit" else 30
            # Come back within 30 s (not at the timeout): a fill must not wait, and nor must the
            # signals queued behind this one.
            leave_for_later(run, int(min(30, max(5, remaining))))
            return
        if run.on_follower and time.monotonic() - started > FOLLOW_SLICE_SECONDS:
            extend_lease(run, force=True)
            run.follow_again = True  # back of the followers' queue (see worker)
            return
        if pacing.stopping.is_set():
            release(run)
            logger.info(run.log("signal_follow_released", reason="worker shutting down"))
            return
        extend_lease(run)
        pacing.stopping.wait(FOLLOW_BACKOFF[min(i, len(FOLLOW_BACKOFF) - 1)])
