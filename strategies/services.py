"""Domain verbs for what the trader configures: kill switches and strategy settings, each
change leaving an audit row (who, when, old value, new value)."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from execution.models import ExchangeAccount
from tvtrader.ops.notifications import notify_kill_switch

from .breakers import BREAKER_FIELDS
from .models import OperatorMark, Strategy, TradingControl
from .switches import actor_name, audit_record, switch_set

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
    *BREAKER_FIELDS,
)


def _switch_set(*, engage: bool, actor: Any, reason: str, scope: str, target: str, strategy=None, **where) -> bool:
    """strategies.switches.switch_set, then the notification. Returns False when nothing changed."""
    changed = switch_set(
        engage=engage, actor=actor, reason=reason, scope=scope, target=target, strategy=strategy, **where
    )
    if changed:
        notify_kill_switch(
            scope=scope, engaged=engage, target=target, actor=actor_name(actor), reason=reason, strategy=strategy
        )
    return changed


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


def subscription_switch(*, subscription, engage: bool, actor: Any, reason: str = "") -> bool:
    """Engage or release the kill switch of one of a strategy's account subscriptions: that
    account's runs of the strategy's alerts are blocked; the other accounts trade on."""
    changed = _switch_set(
        model=type(subscription),
        pk=subscription.pk,
        engage=engage,
        actor=actor,
        reason=reason,
        scope="subscription",
        target=f"{subscription.strategy.strategy_id}@{subscription.account.label}",
        strategy=subscription.strategy,
    )
    subscription.refresh_from_db()
    from .subscriptions import subscriptions_sync

    subscriptions_sync(strategy=subscription.strategy)
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
