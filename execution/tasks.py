"""Celery tasks for execution: thin shells that load by id and call a service."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="execution.execute_signal", ignore_result=True, acks_late=True, time_limit=300, soft_time_limit=280)
def execute_signal(signal_id: int) -> None:
    from .services import signal_execute

    signal_execute(signal_id=signal_id)
