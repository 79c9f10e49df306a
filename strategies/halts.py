"""The kill-switch rule, in one place: whether a strategy may trade now, and why not.

Intake (an alert arriving), the engine (at its claim and right before each send), the
dashboard and the API all ask this function, so they can never disagree.
"""

from __future__ import annotations

from typing import Any


def halt_reason(
    *,
    global_halted: bool,
    strategy_halted: bool,
    strategy_enabled: bool,
    account_halted: bool = False,
    account_label: str = "",
    operator_flatten: bool = False,
    subscription_halted: bool = False,
    subscription_enabled: bool = True,
    fans_out: bool = False,
) -> str:
    """Why trading is stopped, in words ("" when it is not). An operator's flatten (a
    close_all the server created) passes every switch: closing is what a halted strategy wants.
    An alert that fans out to several accounts (`fans_out`) is stopped only by the global and
    the strategy's switches: each account's switches stop that account's run alone."""
    if operator_flatten:
        return ""
    if global_halted:
        return "the global kill switch is engaged"
    if strategy_halted:
        return "this strategy's kill switch is engaged"
    if not strategy_enabled:
        return "this strategy is disabled"
    if account_halted and not fans_out:
        return f"the kill switch of account {account_label} is engaged"
    if subscription_halted:
        return f"the kill switch of this strategy's subscription on account {account_label} is engaged"
    if not subscription_enabled:
        return f"this strategy's subscription on account {account_label} is disabled"
    return ""


def strategy_halt_reason(strategy: Any, *, global_halted: bool, operator_flatten: bool = False) -> str:
    """`halt_reason` for a Strategy instance and its account — or, for a run on one
    subscription (strategies.subscriptions.effective_strategy), that subscription and its
    account."""
    subscription = getattr(strategy, "subscription", None)
    account = strategy.account if strategy.account_id else None
    return halt_reason(
        global_halted=global_halted,
        strategy_halted=strategy.halted,
        strategy_enabled=strategy.enabled,
        account_halted=bool(account and account.halted),
        account_label=account.label if account else "",
        operator_flatten=operator_flatten,
        subscription_halted=bool(subscription and subscription.halted),
        subscription_enabled=subscription.enabled if subscription else True,
        fans_out=subscription is None and bool(getattr(strategy, "fans_out", False)),
    )


def trading_state(strategy: Any, *, global_halted: bool) -> str:
    """For people: halted / disabled / no account / live / paper / testnet."""
    reason = strategy_halt_reason(strategy, global_halted=global_halted)
    if reason:
        return "disabled" if reason == "this strategy is disabled" else "halted"
    account = strategy.account if strategy.account_id else None
    if account is None:
        return "no account"
    return "live" if account.mode == account.Mode.LIVE else account.mode
