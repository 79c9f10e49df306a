"""Domain verbs for execution. (The engine is being written; the public verbs other parts
of the project call are listed here with their contracts.)"""

from __future__ import annotations

from typing import Any


def signal_execute(*, signal_id: int) -> None:
    """Claim a signal (conditional update), re-check kill switches, plan legs, write order
    rows, then talk to the exchange outside any transaction."""
    raise NotImplementedError


def strategy_cancel_open_orders(*, strategy: Any, actor: Any) -> int:
    """Cancel every open order of `strategy` at the exchange; returns how many."""
    raise NotImplementedError


def strategy_flatten(*, strategy: Any, actor: Any) -> Any:
    """Close every position of `strategy` (a synthetic close_all signal through the normal
    chain, bypassing the kill switch). Returns the Signal."""
    raise NotImplementedError


def signal_replay_on_paper(*, signal: Any, actor: Any) -> dict:
    """What `signal` would do now: the planned legs (symbol, side, quantity, type, price)
    computed against a paper gateway, without placing anything. Returns a dict."""
    raise NotImplementedError


def account_test_connection(*, account: Any) -> dict:
    """Check an account's credentials and connectivity (a balance fetch). Returns
    {"ok": bool, "detail": str}."""
    raise NotImplementedError
