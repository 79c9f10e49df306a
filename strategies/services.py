"""Domain verbs for what the trader configures: kill switches and strategy settings, each
change leaving an audit row (who, when, old value, new value)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from execution.models import ExchangeAccount
from tvtrader.ops.notifications import notify_kill_switch

from .models import AuditEntry, Strategy, TradingControl

logger = logging.getLogger("tvtrader.strategies")

# Settings whose changes are audited (everything an operator can edit on a strategy).
AUDITED_FIELDS = (
    "name",
    "enabled",
    "halted",
    "account_id",
    "symbol_override",
    "sizing_mode",
    "size_value",
    "leverage",
    "max_position",
    "order_type",
    "limit_offset_bps",
    "max_slippage_bps",
    "limit_timeout_seconds",
    "on_opposite",
    "allowed_actions",
    "max_signal_age_seconds",
    "dedup_window_seconds",
    "expected_interval_minutes",
    "passphrase_hash",
)


def _actor_name(actor: Any) -> str:
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
        actor=_actor_name(actor),
        target_type=target_type,
        target_id=str(target_id)[:64],
        strategy=strategy,
        field=field,
        old_value="" if old is None else str(old),
        new_value="" if new is None else str(new),
        note=note[:255],
    )


def strategy_halt(*, strategy: Strategy, actor: Any, reason: str = "") -> bool:
    """Engage a strategy's kill switch. Signals already queued are blocked when a worker
    claims them. Returns False when it was already engaged."""
    with transaction.atomic():
        updated = Strategy.objects.filter(pk=strategy.pk, halted=False).update(
            halted=True, halted_at=timezone.now(), halted_by=_actor_name(actor), halt_reason=reason[:255]
        )
        if updated:
            audit_record(
                actor=actor,
                target_type="strategy",
                target_id=strategy.strategy_id,
                field="halted",
                old=False,
                new=True,
                strategy=strategy,
                note=reason,
            )
    if updated:
        logger.warning(
            "event=kill_switch_engaged scope=strategy strategy=%s actor=%s reason=%r",
            strategy.strategy_id,
            _actor_name(actor),
            reason,
        )
        notify_kill_switch(
            scope="strategy",
            engaged=True,
            target=strategy.strategy_id,
            actor=_actor_name(actor),
            reason=reason,
            strategy=strategy,
        )
    strategy.refresh_from_db()
    return bool(updated)


def strategy_resume(*, strategy: Strategy, actor: Any, reason: str = "") -> bool:
    with transaction.atomic():
        updated = Strategy.objects.filter(pk=strategy.pk, halted=True).update(
            halted=False, halted_at=None, halted_by="", halt_reason=""
        )
        if updated:
            audit_record(
                actor=actor,
                target_type="strategy",
                target_id=strategy.strategy_id,
                field="halted",
                old=True,
                new=False,
                strategy=strategy,
                note=reason,
            )
    if updated:
        logger.warning(
            "event=kill_switch_released scope=strategy strategy=%s actor=%s", strategy.strategy_id, _actor_name(actor)
        )
        notify_kill_switch(
            scope="strategy",
            engaged=False,
            target=strategy.strategy_id,
            actor=_actor_name(actor),
            reason=reason,
            strategy=strategy,
        )
    strategy.refresh_from_db()
    return bool(updated)


def account_halt(*, account: ExchangeAccount, actor: Any, reason: str = "") -> bool:
    with transaction.atomic():
        updated = ExchangeAccount.objects.filter(pk=account.pk, halted=False).update(
            halted=True, halted_at=timezone.now(), halted_by=_actor_name(actor), halt_reason=reason[:255]
        )
        if updated:
            audit_record(
                actor=actor,
                target_type="account",
                target_id=account.label,
                field="halted",
                old=False,
                new=True,
                note=reason,
            )
    if updated:
        logger.warning("event=kill_switch_engaged scope=account account=%s actor=%s", account.label, _actor_name(actor))
        notify_kill_switch(scope="account", engaged=True, target=account.label, actor=_actor_name(actor), reason=reason)
    account.refresh_from_db()
    return bool(updated)


def account_resume(*, account: ExchangeAccount, actor: Any, reason: str = "") -> bool:
    with transaction.atomic():
        updated = ExchangeAccount.objects.filter(pk=account.pk, halted=True).update(
            halted=False, halted_at=None, halted_by="", halt_reason=""
        )
        if updated:
            audit_record(
                actor=actor,
                target_type="account",
                target_id=account.label,
                field="halted",
                old=True,
                new=False,
                note=reason,
            )
    if updated:
        notify_kill_switch(
            scope="account", engaged=False, target=account.label, actor=_actor_name(actor), reason=reason
        )
    account.refresh_from_db()
    return bool(updated)


def global_halt(*, actor: Any, reason: str = "") -> bool:
    TradingControl.current()
    with transaction.atomic():
        updated = TradingControl.objects.filter(pk=1, halted=False).update(
            halted=True, halted_at=timezone.now(), halted_by=_actor_name(actor), halt_reason=reason[:255]
        )
        if updated:
            audit_record(
                actor=actor, target_type="global", target_id="", field="halted", old=False, new=True, note=reason
            )
    if updated:
        logger.warning("event=kill_switch_engaged scope=global actor=%s reason=%r", _actor_name(actor), reason)
        notify_kill_switch(scope="global", engaged=True, actor=_actor_name(actor), reason=reason)
    return bool(updated)


def global_resume(*, actor: Any, reason: str = "") -> bool:
    TradingControl.current()
    with transaction.atomic():
        updated = TradingControl.objects.filter(pk=1, halted=True).update(
            halted=False, halted_at=None, halted_by="", halt_reason=""
        )
        if updated:
            audit_record(
                actor=actor, target_type="global", target_id="", field="halted", old=True, new=False, note=reason
            )
    if updated:
        notify_kill_switch(scope="global", engaged=False, actor=_actor_name(actor), reason=reason)
    return bool(updated)


def strategy_audit_changes(*, before: dict[str, Any], strategy: Strategy, actor: Any) -> int:
    """Write one audit row per changed setting. `before` is `strategy_snapshot()` taken
    before the edit."""
    after = strategy_snapshot(strategy)
    changed = 0
    for field in AUDITED_FIELDS:
        if before.get(field) != after.get(field):
            audit_record(
                actor=actor,
                target_type="strategy",
                target_id=strategy.strategy_id,
                field=field,
                old=before.get(field),
                new=after.get(field),
                strategy=strategy,
            )
            changed += 1
    return changed


def strategy_snapshot(strategy: Strategy) -> dict[str, Any]:
    return {field: getattr(strategy, field) for field in AUDITED_FIELDS}
