"""Fan-out: one alert to every enabled subscription of its strategy.

The alert's signal (the parent) is claimed like any other; instead of orders it gets one
child signal per enabled subscription, written in one statement under a unique (parent,
subscription) constraint — a fan-out run again after a crash finds the children it already
wrote and adds none. Each child is then an ordinary signal on its subscription's account
(execute, with strategies.subscriptions.effective_strategy): its own claim, lease, orders
(client ids from the alert, the subscription and the leg), ordering per (account, strategy,
market) and rate bucket, so a failure on one account never holds up another. The host starts
the children at once (the worker on its pool, in parallel); the sweeper brings back any a
crash left behind.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from signals.models import Signal
from strategies.models import Subscription

from .claim import LeaseLost, finish, owned
from .run import Run

logger = logging.getLogger("tvtrader.execution")

#: The parent's fields each child carries as they are.
COPIED = (
    "strategy_id",
    "strategy_key",
    "action",
    "ticker",
    "exchange",
    "price",
    "volume",
    "timeframe",
    "bar_time",
    "tv_order_id",
    "comment",
    "market_position",
    "market_position_size",
    "position_size",
    "prev_market_position",
    "origin",
    "is_test",
    "fired_at",
    "received_at",
    # The alert's own commit: a child is never held as a lagging commit (signals.ordering)
    # for the time its fan-out took.
    "committed_at",
)


def signal_fan_out(run: Run) -> list[int]:
    """Write the children of `run`'s signal (once) and finish it as fanned out. Returns the
    children's ids, oldest first, for the host to start."""
    signal = run.signal
    subscriptions = list(
        Subscription.objects.filter(strategy_id=signal.strategy_id, enabled=True)
        .select_related("account")
        .order_by("id")
    )
    if not subscriptions:
        finish(run, Signal.Status.SKIPPED, "nothing to do: the strategy has no enabled subscription")
        return []
    now = timezone.now()
    children = [
        Signal(
            parent_id=signal.pk,
            subscription_id=sub.pk,
            status=Signal.Status.ACCEPTED,
            started_at=None,
            enqueued_at=now,
            content_type="fan-out",
            **{field: getattr(signal, field) for field in COPIED},
        )
        for sub in subscriptions
    ]
    with transaction.atomic():
        if not owned(run).select_for_update().exists():
            raise LeaseLost(run.pk)
        Signal.objects.bulk_create(children, ignore_conflicts=True)
    ids = list(Signal.objects.filter(parent_id=signal.pk).order_by("id").values_list("id", flat=True))
    labels = ", ".join(sub.account.label for sub in subscriptions)
    logger.info(run.log("signal_fanned_out", children=",".join(map(str, ids)), accounts=labels))
    finish(run, Signal.Status.FANNED_OUT, f"sent to {len(ids)} subscription(s): {labels}")
    return ids
