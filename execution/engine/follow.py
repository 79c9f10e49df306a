"""Follow: an acknowledged order to its final state — fills recorded as they come, and a
limit order left open past the strategy's timeout cancelled (what filled is kept).

In a worker, what the venue says arrives from its private stream and the worker (engine.worker)
records it; `order_look` is one poll, used when there is no stream or it is down, and by a
direct run's `order_follow` loop."""

from __future__ import annotations

import logging
import time

from django.utils import timezone

from execution.exchanges import Gateway, GatewayError, OrderState
from execution.models import Order

from . import ledger, pacing
from .claim import extend_lease, leave_for_later, release
from .run import Run

logger = logging.getLogger("tvtrader.execution")

FOLLOW_MAX_SECONDS = 120
# Polling back-off for an acknowledged order whose venue has no stream (or whose stream is
# down): soon at first (a market order fills at once), then less often.
FOLLOW_BACKOFF = (0.05, 0.1, 0.15, 0.25, 0.5, 1, 1, 2)


def order_look(gateway: Gateway, order: Order, *, limit_timeout_seconds: float) -> OrderState | None:
    """One look at an acknowledged order: its state at the venue — or, for a limit order open
    past the strategy's timeout, the state after cancelling it (what filled is kept). None
    when the venue could not be asked."""
    age = (timezone.now() - (order.submitted_at or timezone.now())).total_seconds()
    try:
        if order.order_type == "limit" and age >= limit_timeout_seconds:
            state = gateway.cancel_order(
                symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
            )
            logger.info(
                "event=order_timeout_cancel strategy=- signal=%s order=%s filled=%s",
                order.signal_id,
                order.client_order_id,
                order.filled_qty.normalize(),
            )
            return state
        return gateway.find_order(
            symbol=order.symbol, client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id
        )
    except GatewayError as exc:
        logger.info(
            "event=order_poll_failed strategy=- signal=%s order=%s error=%s",
            order.signal_id,
            order.client_order_id,
            str(exc)[:200],
        )
        return None


def order_follow(run: Run, gateway: Gateway, order: Order) -> None:
    """Poll an acknowledged order to a final state here (a direct run: scripts, tests, no
    worker); cancel a limit order past its timeout."""
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
            time.sleep(max(0.0, FOLLOW_BACKOFF[0] - age))
        order.refresh_from_db()
        if order.is_terminal:
            return
        state = order_look(gateway, order, limit_timeout_seconds=strategy.limit_timeout_seconds)
        if state is not None:
            ledger.order_apply_state(order=order, state=state, book_positions=run.book_positions)
            order.refresh_from_db()
            if order.is_terminal:
                return
        if time.monotonic() - started > FOLLOW_MAX_SECONDS:
            age = (timezone.now() - (order.submitted_at or timezone.now())).total_seconds()
            remaining = strategy.limit_timeout_seconds - age if order.order_type == "limit" else 30
            # Come back within 30 s (not at the timeout): a fill must not wait, and nor must the
            # signals queued behind this one.
            leave_for_later(run, int(min(30, max(5, remaining))))
            return
        if pacing.stopping.is_set():
            release(run)
            logger.info(run.log("signal_follow_released", reason="worker shutting down"))
            return
        extend_lease(run)
        pacing.stopping.wait(FOLLOW_BACKOFF[min(i, len(FOLLOW_BACKOFF) - 1)])
