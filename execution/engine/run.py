"""The run object: everything one run of one signal carries from its claim to its end.

A run is one worker's turn at a signal, from claiming it (conditional update, fencing token)
to leaving it: finished, handed to a follower, or left leased for a later run. Every stage
module takes the `Run` and reads or updates it; nothing rides on the `Signal` instance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from execution.exchanges import Gateway, OrderState
    from execution.models import ExchangeAccount, Order
    from signals.models import Signal
    from strategies.models import Strategy

logger = logging.getLogger("tvtrader.execution")


class RetryLater(Exception):
    """Nothing was sent and the cause is temporary (e.g. markets could not be loaded): keep
    the signal for the sweeper to bring back shortly."""


@dataclass
class Run:
    signal: Signal
    #: The fencing token: `signal.attempts` as this run's claim set it. Every write that
    #: needs ownership is conditional on it (see claim.owned).
    token: int
    #: The signal's first run: no order exists yet (a resumed run finds them in the database).
    first: bool
    global_halted: bool = False
    #: The strategy's non-zero positions on its account, read in the claim's snapshot
    #: (PostgreSQL); None when they must be read when planning.
    positions: dict[str, Decimal] | None = None
    claimed_mono: float = field(default_factory=time.monotonic)
    lease_renewed_mono: float = field(default_factory=time.monotonic)
    #: Legs planned and not written yet: on PostgreSQL the first send writes them (see send).
    unsaved_legs: list[Order] | None = None
    #: The venue's reply to an order sent with `defer_reply`, for the follower to record:
    #: (order, state, sent at, acknowledged at).
    pending_reply: tuple[Order, OrderState, Any, Any] | None = None
    #: Set when the run's host follows its order now and carries the run on (worker).
    handed_off: bool = False
    gateway: Gateway | None = None
    send_phase: Any = None
    #: Read the kill switches again before every later send (a breaker engaged one).
    recheck: bool = False
    #: (first fill, last fill) of the run's orders, written with the final status (claim.finish).
    fill_times: tuple[Any, Any] | None = None

    @property
    def strategy(self) -> Strategy:
        return self.signal.strategy

    @property
    def account(self) -> ExchangeAccount | None:
        return self.signal.strategy.account if self.signal.strategy_id else None

    @property
    def book_positions(self) -> bool:
        """Test signals run on a scratch paper book whatever the account, and never book
        positions or P&L: what the trader watches stays as it was."""
        return self.account is not None and not self.signal.is_test

    @property
    def pk(self) -> int:
        return self.signal.pk

    def log(self, event: str, **fields: Any) -> str:
        return event_line(self.signal, event, **fields)

    def end_send_phase(self) -> None:
        if self.send_phase is not None:
            self.send_phase.end()


def event_line(signal: Signal, event: str, **fields: Any) -> str:
    """`event=<name> strategy=<id> signal=<id> key=value…`: every engine log line about a
    signal carries its strategy and id."""
    extra = " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}" for k, v in fields.items())
    return f"event={event} strategy={signal.strategy_key or '-'} signal={signal.pk} {extra}".rstrip()
