"""Kill switches as data: engage or release one (a conditional update, so a repeat is a
no-op) with its audit row and log line. Notification-free, so the engine's breakers can
engage a switch themselves (execution/engine/breakers.py) and tell the rest through an
event; the operator verbs in strategies.services add the notification.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import AuditEntry, Strategy

logger = logging.getLogger("tvtrader.strategies")


def actor_name(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:150]
    return (getattr(actor, "get_username", lambda: str(actor))() or str(actor))[:150]


def audit_record(
    *,
    actor: Any,
    target_type: str,
    target_id: str,
    field: str,
    old: Any,
    new: Any,
    strategy: Strategy | None = None,
    note: str = "",
) -> AuditEntry:
    if field == "passphrase_hash":
        old, new = ("set" if old else "unset"), ("changed" if new else "unset")
    return AuditEntry.objects.create(
        actor=actor_name(actor),
        target_type=target_type,
        target_id=str(target_id)[:64],
        strategy=strategy,
        field=field,
        old_value="" if old is None else str(old),
        new_value="" if new is None else str(new),
        note=note[:255],
    )


def switch_set(
    *,
    model,
    pk: int,
    engage: bool,
    actor: Any,
    reason: str,
    scope: str,
    target: str,
    strategy: Strategy | None = None,
) -> bool:
    """Engage or release one kill switch, with its audit row and log line. Returns False
    when nothing changed (it already was in that position)."""
    if engage:
        values = {
            "halted": True,
            "halted_at": timezone.now(),
            "halted_by": actor_name(actor),
            "halt_reason": reason[:255],
        }
    else:
        values = {"halted": False, "halted_at": None, "halted_by": "", "halt_reason": ""}
    with transaction.atomic():
        updated = model.objects.filter(pk=pk, halted=not engage).update(**values)
        if updated:
            audit_record(
                actor=actor,
                target_type=scope,
                target_id=target,
                field="halted",
                old=not engage,
                new=engage,
                strategy=strategy,
                note=reason,
            )
    if updated:
        logger.warning(
            "event=kill_switch_%s scope=%s target=%s actor=%s reason=%r",
            "engaged" if engage else "released",
            scope,
            target or "-",
            actor_name(actor),
            reason,
        )
    return bool(updated)
