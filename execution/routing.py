"""Queue routing for scale-out: which Celery queue executes a signal."""

from __future__ import annotations

from signals.models import Signal

DEFAULT_QUEUE = "orders"


def queue_name_for_account(account_id: int | None) -> str:
    return f"orders.account-{account_id}" if account_id else DEFAULT_QUEUE


def queue_for_signal(signal_id: int) -> str:
    account_id = Signal.objects.filter(pk=signal_id).values_list("strategy__account_id", flat=True).first()
    return queue_name_for_account(account_id)
