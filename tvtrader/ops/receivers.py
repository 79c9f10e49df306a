"""Notifications and metrics for what the engine reports (execution/events.py)."""

from __future__ import annotations

from django.dispatch import receiver

from execution import events


@receiver(events.signal_finished, dispatch_uid="ops.notify_signal_outcome")
def _signal_finished(sender, *, alert, **_kwargs) -> None:
    from .notifications import notify_signal_outcome

    if alert.status == "fanned_out":
        return  # each account's run is notified on its own

    notify_signal_outcome(signal=alert)


@receiver(events.exchange_error, dispatch_uid="ops.count_exchange_error")
def _exchange_error(sender, *, exchange: str, kind: str, **_kwargs) -> None:
    from .metrics import exchange_error_inc

    exchange_error_inc(exchange, kind)


@receiver(events.breaker_tripped, dispatch_uid="ops.notify_breaker_tripped")
def _breaker_tripped(sender, *, scope: str, target: str, breaker: str, reason: str, strategy, **_kwargs) -> None:
    from .notifications import notify_kill_switch

    notify_kill_switch(
        scope=scope, engaged=True, target=target, actor=f"breaker:{breaker}", reason=reason, strategy=strategy
    )


@receiver(events.order_needs_operator, dispatch_uid="ops.notify_order_needs_operator")
def _order_needs_operator(sender, *, alert, order, text: str, **_kwargs) -> None:
    from .notifications import notification_send

    notification_send(event="signal_failed", strategy=alert.strategy, text=text)


@receiver(events.protection_failed, dispatch_uid="ops.notify_protection_failed")
def _protection_failed(sender, *, order, text: str, **_kwargs) -> None:
    from .notifications import notification_send

    # Filed under signal_failed: a target that wants failures wants this one most.
    notification_send(event="signal_failed", strategy=order.strategy, text=text)
