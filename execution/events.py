"""What the engine tells the rest of the install, without knowing who listens.

The engine sends these; `tvtrader.ops` (notifications, metrics) connects receivers in its
AppConfig.ready(). Receivers run in the engine's thread, after the fact they describe is
committed, and must never raise into it (django's `send_robust` is used).
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

logger = logging.getLogger("tvtrader.execution")

# A signal row travels as `alert`: django's dispatcher passes its own `signal` argument.

#: A signal reached its final state: `alert` (a loaded Signal).
signal_finished = Signal()
#: The exchange answered an order with an error: `exchange` (venue name), `kind` (error class).
exchange_error = Signal()
#: An order is still unknown after several runs and needs an operator: `alert`, `order`, `text`.
order_needs_operator = Signal()
#: A breaker engaged a kill switch by itself: `scope` (strategy / account), `target` (its id or
#: label), `breaker` (strategies.breakers name), `reason`, `strategy` (or None).
breaker_tripped = Signal()
#: A protective order (stop-loss, take-profit, trailing stop) was refused or could not be
#: placed: the position is unprotected. `order` (the protective Order), `text` (for a trader).
protection_failed = Signal()


def emit(event: Signal, **kwargs) -> None:
    for receiver, result in event.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            logger.warning("event=event_receiver_failed receiver=%s error=%s", getattr(receiver, "__name__", receiver),
                           type(result).__name__)  # fmt: skip
