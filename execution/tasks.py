"""Celery tasks for execution: thin shells that load by id and call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

logger = logging.getLogger("tvtrader.execution")


@shared_task(name="execution.execute_signal", ignore_result=True, acks_late=True)
def execute_signal(signal_id: int) -> None:
    # No Celery retry here on purpose: the engine never resends an order blindly, and a
    # signal it could not finish stays leased in the database for the sweeper to resume.
    from .services import signal_execute

    signal_execute(signal_id=signal_id)


@shared_task(name="execution.reconcile", ignore_result=True)
def reconcile() -> int:
    """Periodic reconciliation (Celery beat): resolves unknown orders, reports drift."""
    from tvtrader.ops.notifications import notify_reconcile_drift

    from .reconcile import reconcile_all
    from .selectors import reconciliation_drift_store

    reports = reconcile_all(include_paper=False)
    reconciliation_drift_store(
        [f"{r.account}: {d.kind} {d.subject} ours {d.ours}, exchange {d.theirs}" for r in reports for d in r.unresolved]
    )
    for report in reports:
        if report.unresolved:
            notify_reconcile_drift(
                account_label=report.account,
                lines=[
                    f"{d.kind} {d.subject}: ours {d.ours}, exchange {d.theirs} ({d.action})" for d in report.unresolved
                ],
            )
    return sum(len(r.unresolved) for r in reports)


@worker_ready.connect
def _warm_on_start(**_kwargs) -> None:
    """Load exchange markets before the first alert needs them, and pick up anything the
    broker lost while no worker was running."""
    from signals.services import signals_sweep

    from .reconcile import reconcile_all
    from .services import gateways_warm

    try:
        warmed = gateways_warm()
        # Resolve what the exchange did with orders left in flight before trading resumes.
        drift = sum(len(r.unresolved) for r in reconcile_all(include_paper=False))
        if drift:
            logger.warning("event=startup_reconcile_drift unresolved=%d", drift)
        requeued = signals_sweep(older_than_seconds=0)
        logger.info("event=worker_started gateways_warmed=%d signals_requeued=%d", warmed, requeued)
    except Exception:
        logger.exception("event=worker_start_hook_failed")
