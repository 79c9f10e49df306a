"""Claim: who owns a signal's run, for how long, and how a run ends.

A run starts with a conditional claim (statements.signal_claim: accepted or lease expired,
and nothing earlier of its market still pending), which sets `attempts` + 1 — this run's
fencing token. Every later write that needs ownership is conditional on that token
(`owned`), so a worker whose lease ran out and was taken over can no longer renew, send or
finish anything. A run ends by finishing the signal (a final status), or by leaving it
leased for a later run (the sweeper brings it back when the lease ends).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from execution import events
from execution.exchanges import SendAborted
from signals.models import Signal
from strategies.subscriptions import effective_strategy
from tvtrader.processes import lease_owner

from . import statements
from .run import Run, event_line

logger = logging.getLogger("tvtrader.execution")

LEASE_RENEW_EVERY_SECONDS = 5.0


class LeaseLost(SendAborted):
    """Another worker took this signal over (our lease ran out): stop without touching it."""


def lease_until(seconds: float | None = None):
    return timezone.now() + timedelta(seconds=seconds or settings.SIGNAL_LEASE_SECONDS)


def _load_or_claim(signal_id: int, claim: bool) -> statements.Loaded | None:
    """One statement (two on SQLite). Django's per-task connection health check would add a
    `SELECT 1` round trip before it; instead a kept connection found dead (a PostgreSQL
    restart) is replaced and the statement tried once more."""
    kept = connection.connection is not None
    connection.health_check_done = True
    now = timezone.now()

    def attempt():
        if not claim:
            return statements.signal_load(signal_id)
        return statements.signal_claim(signal_id=signal_id, now=now, lease_until=lease_until(), owner=lease_owner())

    try:
        return attempt()
    except DatabaseError:
        if not kept or connection.is_usable():
            raise
        # A dead connection never ran the statement; if it did and only the reply was lost,
        # the claim is in place and the retry finds it taken: the lease runs out and the
        # sweeper resumes the signal (a delay, never a second order).
        logger.warning("event=worker_db_reconnect reason=kept connection found dead signal=%s", signal_id)
        connection.close()
        return attempt()


@dataclass
class Claimed:
    """What a claim found. `run` when it took; else, when the signal still has to run, why
    not yet: `blocked_by` (the pending signal of its market that arrived before it) or
    `held_until` (its commit lagged its arrival: see statements)."""

    run: Run | None = None
    blocked_by: int | None = None
    held_until: float | None = None  # a time.time()


def claim(signal_id: int) -> Claimed:
    """Claim the signal and start a run. Without a run: no such signal, final already, owned
    by another worker, or it has to wait (see Claimed)."""
    loaded = _load_or_claim(signal_id, claim=True)
    if loaded is None:
        return Claimed()
    signal = loaded.signal
    if signal.strategy_id is None or signal.is_terminal:
        return Claimed()
    if not loaded.claimed:
        held_until = None
        if signal.status == Signal.Status.ACCEPTED and signal.committed_at and signal.received_at:
            lag = (signal.committed_at - signal.received_at).total_seconds()
            hold_end = signal.received_at.timestamp() + settings.INTAKE_HOLD_SECONDS
            if lag > settings.INTAKE_LAG_SECONDS and hold_end > time.time():
                held_until = hold_end
        logger.info(event_line(signal, "signal_not_claimed", status=signal.status, waits_for=loaded.blocked_by or "-"))
        return Claimed(blocked_by=loaded.blocked_by, held_until=held_until)
    subscribed = _on_subscription(signal)
    return Claimed(
        run=Run(
            signal=signal,
            token=signal.attempts,
            first=signal.attempts == 1,
            global_halted=loaded.global_halted,
            # A fanned-out alert's run trades its subscription's account: the claim's
            # snapshot read the strategy's own account, so read them when planning.
            positions=None if subscribed else loaded.positions,
        )
    )


def _on_subscription(signal: Signal) -> bool:
    """A fanned-out alert's child runs on its subscription: its strategy becomes the
    strategy as that subscription sees it (its account, its own settings)."""
    if signal.subscription_id is None:
        return False
    from strategies.models import Subscription

    subscription = Subscription.objects.select_related("account").get(pk=signal.subscription_id)
    Signal._meta.get_field("strategy").set_cached_value(signal, effective_strategy(signal.strategy, subscription))
    return True


def resume(signal_id: int, *, token: int) -> Run | None:
    """The run holding `token`, loaded again (a follower picking up where the sending thread
    left off). None when the signal is final; the token is kept whatever the row says, so if
    another worker took the signal over meanwhile every conditional write refuses."""
    loaded = _load_or_claim(signal_id, claim=False)
    if loaded is None or loaded.signal.is_terminal:
        return None
    _on_subscription(loaded.signal)
    return Run(signal=loaded.signal, token=token, first=False, global_halted=loaded.global_halted)


def owned(run: Run):
    """The signal, only while this run still owns it (status processing, its token)."""
    return Signal.objects.filter(pk=run.pk, status=Signal.Status.PROCESSING, attempts=run.token)


def extend_lease(run: Run, seconds: float | None = None, *, force: bool = False) -> None:
    """Renew this run's lease (at most every few seconds: the lease is long, and every
    statement on the way to the exchange is latency). Raises LeaseLost if taken over."""
    now = time.monotonic()
    if not force and seconds is None and now - run.lease_renewed_mono < LEASE_RENEW_EVERY_SECONDS:
        return
    if not owned(run).update(lease_until=lease_until(seconds)):
        raise LeaseLost(run.pk)
    run.lease_renewed_mono = now


def leave_for_later(run: Run, seconds: float) -> None:
    """Keep the signal leased for `seconds`; the sweeper brings it back when that ends."""
    owned(run).update(lease_until=lease_until(seconds))


def release(run: Run) -> None:
    """Give the signal back at once (the worker is stopping): the next worker resumes it
    without waiting for the lease to run out."""
    owned(run).update(lease_until=timezone.now())


def finish(run: Run, status: str, reason: str = "") -> bool:
    """Set the signal's final status (only while this run owns it), log it and tell the
    rest of the install. Returns False when the run no longer owned the signal."""
    signal = run.signal
    # One statement: the conditional update returns the row as it now is (the signal's
    # latency chain included, for the notification), no second read.
    if not statements.signal_finish(
        signal, token=run.token, status=status, now=timezone.now(), reason=reason[:2000], fill_times=run.fill_times
    ):
        logger.warning(run.log("signal_finish_skipped", note="not owned by this worker any more"))
        return False
    level = (
        logging.INFO
        if status in (Signal.Status.EXECUTED, Signal.Status.SKIPPED, Signal.Status.FANNED_OUT)
        else logging.WARNING
    )
    logger.log(level, run.log(f"signal_{status}", reason=reason or "-"))
    events.emit(events.signal_finished, alert=signal)
    return True
