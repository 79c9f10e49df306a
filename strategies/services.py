"""Domain verbs for what the trader configures: kill switches and strategy settings, each
change leaving an audit row (who, when, old value, new value)."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from execution.models import ExchangeAccount
from tvtrader.ops.notifications import notify_kill_switch

from .models import AuditEntry, OperatorMark, Strategy, TradingControl

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


def _switch_set(
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
    """Engage or release one kill switch (a conditional update, so a repeat is a no-op),
    with its audit row, log line and notification. Returns False when nothing changed."""
    if engage:
        values = {
            "halted": True,
            "halted_at": timezone.now(),
            "halted_by": _actor_name(actor),
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
            _actor_name(actor),
            reason,
        )
        notify_kill_switch(
            scope=scope, engaged=engage, target=target, actor=_actor_name(actor), reason=reason, strategy=strategy
        )
    return bool(updated)


def strategy_halt(*, strategy: Strategy, actor: Any, reason: str = "") -> bool:
    """Engage a strategy's kill switch. Signals already queued are blocked when a worker
    claims them. Returns False when it was already engaged."""
    changed = _switch_set(
        model=Strategy,
        pk=strategy.pk,
        engage=True,
        actor=actor,
        reason=reason,
        scope="strategy",
        target=strategy.strategy_id,
        strategy=strategy,
    )
    strategy.refresh_from_db()
    return changed


def strategy_resume(*, strategy: Strategy, actor: Any, reason: str = "") -> bool:
    changed = _switch_set(
        model=Strategy,
        pk=strategy.pk,
        engage=False,
        actor=actor,
        reason=reason,
        scope="strategy",
        target=strategy.strategy_id,
        strategy=strategy,
    )
    strategy.refresh_from_db()
    return changed


def account_halt(*, account: ExchangeAccount, actor: Any, reason: str = "") -> bool:
    """Engage the kill switch of every strategy trading on `account`."""
    changed = _switch_set(
        model=ExchangeAccount,
        pk=account.pk,
        engage=True,
        actor=actor,
        reason=reason,
        scope="account",
        target=account.label,
    )
    account.refresh_from_db()
    return changed


def account_resume(*, account: ExchangeAccount, actor: Any, reason: str = "") -> bool:
    changed = _switch_set(
        model=ExchangeAccount,
        pk=account.pk,
        engage=False,
        actor=actor,
        reason=reason,
        scope="account",
        target=account.label,
    )
    account.refresh_from_db()
    return changed


def global_halt(*, actor: Any, reason: str = "") -> bool:
    """Stop all trading: every strategy's alerts are recorded as blocked."""
    TradingControl.current()
    return _switch_set(model=TradingControl, pk=1, engage=True, actor=actor, reason=reason, scope="global", target="")


def global_resume(*, actor: Any, reason: str = "") -> bool:
    TradingControl.current()
    return _switch_set(model=TradingControl, pk=1, engage=False, actor=actor, reason=reason, scope="global", target="")


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


def operator_mark_seen(*, user: Any, key: str, now: Any = None) -> OperatorMark:
    """Record that `user` has looked at `key` (the refused alerts) now, with today's counts,
    so the dashboard's "since you last looked" starts from here."""
    from .attention import refusals_snapshot

    now = now or timezone.now()
    data = {"rows": refusals_snapshot(now=now)} if key == "refusals" else {}
    mark, _ = OperatorMark.objects.update_or_create(user=user, key=key, defaults={"at": now, "data": data})
    return mark
