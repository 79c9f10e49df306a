"""Subscriptions: the accounts a strategy trades on, and what each run on one of them uses.

A strategy whose only subscription is its own account with no setting of its own runs as it
always did: the alert's signal executes directly (`Strategy.fans_out` False). Otherwise the
engine fans the alert out: one child signal per enabled subscription
(execution/engine/fanout.py), each run on its account with `effective_strategy`.
"""

from __future__ import annotations

import copy
from typing import Any

from .models import Strategy, Subscription


def effective_strategy(strategy: Strategy, subscription: Subscription) -> Strategy:
    """The strategy as a run on `subscription` sees it: its account, and the subscription's
    own settings over the strategy's. A copy: never saved. A multiplier of the alert's volume
    is signal sizing scaled by `size_multiplier` (engine.plan.entry_size)."""
    effective = copy.copy(strategy)
    effective._state = copy.copy(strategy._state)
    effective._state.fields_cache = {}
    for field, value in subscription.overrides.items():
        setattr(effective, field, value)
    effective.size_multiplier = None
    if subscription.sizing_mode == Subscription.SizingMode.MULTIPLIER:
        effective.sizing_mode = Strategy.SizingMode.SIGNAL
        effective.size_multiplier = subscription.size_value
    effective.account_id = subscription.account_id
    Strategy._meta.get_field("account").set_cached_value(effective, subscription.account)
    effective.subscription = subscription
    return effective


def fans_out(strategy: Strategy, subscriptions: list[Subscription] | None = None) -> bool:
    """Whether alerts must fan out: anything but exactly the strategy's own account, enabled,
    switch off, with no setting of its own."""
    subs = list(strategy.subscriptions.all()) if subscriptions is None else subscriptions
    if not subs:
        return False
    if len(subs) > 1:
        return True
    only = subs[0]
    return not (only.account_id == strategy.account_id and only.enabled and not only.halted and not only.overrides)


def subscriptions_sync(*, strategy: Strategy, previous_account_id: Any = None) -> bool:
    """After the strategy's account or its subscriptions changed: the strategy's own account
    is subscribed (a changed account moves its subscription along), and `fans_out` is right.
    Returns `fans_out`."""
    if strategy.account_id:
        own = Subscription.objects.filter(strategy=strategy, account_id=strategy.account_id)
        if not own.exists():
            moved = 0
            if previous_account_id and previous_account_id != strategy.account_id:
                moved = Subscription.objects.filter(strategy=strategy, account_id=previous_account_id).update(
                    account_id=strategy.account_id
                )
            if not moved:
                Subscription.objects.create(strategy=strategy, account_id=strategy.account_id)
    value = fans_out(strategy, list(Subscription.objects.filter(strategy=strategy)))
    if value != strategy.fans_out:
        Strategy.objects.filter(pk=strategy.pk).update(fans_out=value)
        strategy.fans_out = value
    return value
