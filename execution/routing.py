"""Queue routing for scale-out: which Celery queue executes a signal."""

from __future__ import annotations

from signals.models import Signal

DEFAULT_QUEUE = "orders"


def queue_name_for_account(account_id: int | None) -> str:
    return f"orders.account-{account_id}" if account_id else DEFAULT_QUEUE


def queue_for_signal(signal_id: int) -> str:
    row = Signal.objects.filter(pk=signal_id).values_list("subscription__account_id", "strategy__account_id").first()
    return queue_name_for_account((row[0] or row[1]) if row else None)
