"""Worker: how a Celery worker process runs signals — sending on pool threads, following
on a small pool of follower threads, warmed up before the first alert, and letting go of
its signals when it stops.

A signal's first run sends its orders on the Celery pool thread that received the task
and hands the following to a follower thread in the same process (same run, same lease
and fencing token), freeing the pool thread at once. Followers wait, briefly, while this
process still has orders on their way out (pacing.sends_first).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

from execution.exchanges import gateway_for
from execution.models import ExchangeAccount, Order

from . import claim as claims
from . import execute, ledger, pacing, send, statements
from .run import Run

logger = logging.getLogger("tvtrader.execution")

_followers: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def signal_execute(*, signal_id: int, follow_in_background: bool = False) -> None:
    """Run a signal: claim it, plan, send, follow the orders to a final state. The worker
    passes `follow_in_background` (see the module docstring); called directly, the run
    follows its orders before returning."""
    with pacing.SendPhase() as phase:
        execute.execute(
            signal_id,
            follow_in_background=follow_in_background,
            handoff=_follow_later if follow_in_background else None,
            phase=phase,
        )


def followers_stop() -> None:
    """The worker is shutting down: followers poll once more, then release their signals'
    leases, so the next worker resumes them at once instead of after the lease runs out."""
    pacing.stopping.set()


def _followers_pool() -> ThreadPoolExecutor:
    global _followers
    with _lock:
        if _followers is None:
            _followers = ThreadPoolExecutor(
                max_workers=settings.EXECUTION_FOLLOW_THREADS, thread_name_prefix="tvtrader-follow"
            )
    return _followers


def _follow_later(run: Run, orders: list[Order]) -> None:
    """Hand this run over to a follower thread: it keeps the lease and the fencing token, so
    nothing else can act on the signal meanwhile; if the process dies, the lease runs out
    and the sweeper resumes the signal as it would any interrupted run."""
    _followers_pool().submit(_follow, run.pk, run.token, run.claimed_mono, run.pending_reply, run.lease_renewed_mono)
    logger.info(run.log("signal_follow_later", orders=",".join(f"{o.client_order_id}:{o.status}" for o in orders)))


def _follow(signal_id: int, token: int, claimed_mono: float, reply, lease_renewed: float) -> None:
    # Nothing a follower does is urgent next to an order still on its way out: during a burst
    # it starts (loading the signal, recording the acknowledgement) only once the sends pause.
    pacing.sends_first()
    close_old_connections()  # what a task start does: a follower thread lives long
    try:
        run = claims.resume(signal_id, token=token)
        if run is None:
            return
        run.claimed_mono, run.lease_renewed_mono, run.on_follower = claimed_mono, lease_renewed, True
        if reply is not None:
            # The exchange's acknowledgement of the order the pool thread sent: recorded here,
            # off the sending path. Until then the order reads SUBMITTING, which a resumed
            # run (after a crash) resolves by looking it up, never by resending blindly.
            order, state, sent_at, acked_at = reply
            send.record_sent(run, order, sent_at)
            ledger.order_apply_state(
                order=order, state=state, book_positions=run.book_positions, reply=True, acked_at=acked_at
            )
        execute.run_stages(run)
        if run.follow_again and not pacing.stopping.is_set():
            _followers_pool().submit(_follow, signal_id, token, claimed_mono, None, run.lease_renewed_mono)
    except Exception:
        logger.exception("event=follow_failed signal=%s", signal_id)


# --- start-up --------------------------------------------------------------------------------


def _traded_accounts():
    return ExchangeAccount.objects.filter(strategies__enabled=True).exclude(mode=ExchangeAccount.Mode.PAPER).distinct()


def gateways_warm() -> int:
    """Load markets for every account an enabled strategy trades on (worker start-up)."""
    warmed = 0
    for account in _traded_accounts():
        try:
            gateway = gateway_for(account)
            warm = getattr(gateway, "warm", None)
            if warm:
                warm()
                warmed += 1
        except Exception as exc:
            logger.warning("event=warm_failed account=%s error=%s", account.label, str(exc)[:200])
    return warmed


def traded_account_ids() -> list[int]:
    return list(_traded_accounts().values_list("pk", flat=True))


def thread_warm(account_ids: list[int], barrier: threading.Barrier | None) -> None:
    """Open this pool thread's database connection, warm and prepare the hot-path
    statements on it, and check out a ccxt client for each account, so the first burst
    after a start pays for none of it (each new thread would otherwise connect to
    PostgreSQL, plan every statement and build its exchange client while an alert waits)."""
    from django.db import connection

    connection.ensure_connection()
    statements.warm()
    for account in ExchangeAccount.objects.filter(pk__in=account_ids):
        gateway = gateway_for(account)
        client = getattr(gateway, "_client", None)
        if client is not None:
            with client():
                if barrier is not None:
                    try:
                        # Hold the client until every warm task runs, so each gets its own.
                        barrier.wait(timeout=5)
                    except threading.BrokenBarrierError:
                        pass
