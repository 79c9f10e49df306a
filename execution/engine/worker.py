"""Worker: how a Celery worker process runs signals.

- A Celery pool thread claims a signal, plans it and sends its first order, then hands the
  order to this process's `Worker` and takes the next alert: it never waits on the venue.
- The Worker learns what the venue did from the account's private stream
  (execution.exchanges.streams) — a fill is known milliseconds after the venue reports it —
  or, where there is no stream or it is down, by polling on a timer. What it learns is
  recorded (ledger) on a small pool of follower threads, and a run whose order is final is
  carried on there: its next leg sent, or the signal finished.
- A finished signal starts, in this process and at once, the signal of its market that
  waited for it (no broker round trip); what waits elsewhere is woken through the outbox.
- A run stopped by something temporary (the database gone, an order still unresolved) is
  tried again here shortly, on the same lease, instead of after the lease runs out.
- Parked runs keep their leases renewed; when the worker stops it gives them back at once.
Calling `signal_execute` without `follow_in_background` (scripts, tests) runs the signal to
its end on the calling thread instead (execute.INLINE).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from execution.exchanges import OrderState, gateway_for
from execution.models import ExchangeAccount, Order
from signals import outbox
from signals.models import Signal

from . import claim as claims
from . import execute, ledger, pacing, protect, send, statements
from .follow import FOLLOW_BACKOFF, order_look
from .run import Run

logger = logging.getLogger("tvtrader.execution")

# A fallback look at an order whose venue streams its updates: the stream should have told
# us long before; if it did not (a silent stream), this finds out.
STREAM_FALLBACK_POLL_SECONDS = 2.0
LEASE_RENEW_SECONDS = 10.0
RETRY_BACKOFF = (0.5, 1.0, 2.0, 4.0, 5.0)
EARLY_STATES_KEEP_SECONDS = 30.0


class _Timer:
    """Calls functions at given times, on one daemon thread (they must be quick: the
    Worker's just submit work to its pool)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, object, tuple]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="tvtrader-timer", daemon=True)
        self._thread.start()

    def at(self, when_monotonic: float, fn, *args) -> None:
        with self._cond:
            heapq.heappush(self._heap, (when_monotonic, next(self._seq), fn, args))
            self._cond.notify()

    def after(self, seconds: float, fn, *args) -> None:
        self.at(time.monotonic() + max(0.0, seconds), fn, *args)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic()))
                if self._stopped:
                    return
                _, _, fn, args = heapq.heappop(self._heap)
            try:
                fn(*args)
            except Exception:
                logger.exception("event=timer_callback_failed")


@dataclass(eq=False)
class _Watch:
    """An acknowledged order this process follows."""

    order_id: int
    client_order_id: str
    signal_id: int
    account_id: int
    paper: bool
    #: A test signal's order, on the scratch paper book (exchanges.gateway_for).
    scratch: bool
    book_positions: bool
    order_type: str
    #: When a limit order left open must be cancelled (time.monotonic()); None otherwise.
    limit_deadline: float | None
    polls: int = 0


@dataclass(eq=False)
class _Parked:
    """A run between two of its turns: its order is out, the Worker carries it on."""

    signal_id: int
    token: int
    strategy_key: str
    claimed_mono: float
    busy: bool = False
    again: bool = False
    retries: int = 0
    watches: set[str] = field(default_factory=set)


class _HostView:
    """The Worker as an execute.Host, for pool threads (which defer recording replies) or
    follower threads (which record them at once)."""

    def __init__(self, worker: Worker, *, defer_replies: bool) -> None:
        self._worker = worker
        self.defer_replies = defer_replies

    def handoff(self, run: Run, order: Order) -> bool:
        return self._worker.handoff(run, order)

    def finished(self, signal: Signal) -> None:
        self._worker.finished(signal)

    def retry(self, run: Run, seconds: float, reason: str) -> None:
        self._worker.retry(run, seconds, reason)

    def fanned_out(self, signal_ids: list[int]) -> None:
        self._worker.fan_out(signal_ids)


class Worker:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pool = ThreadPoolExecutor(
            max_workers=settings.EXECUTION_FOLLOW_THREADS, thread_name_prefix="tvtrader-follow"
        )
        self.timer = _Timer()
        # An alert's runs on its subscriptions start together, each sending like a run on the
        # Celery pool (its reply recorded by a follower), never queued behind follow-ups.
        self.fanout_pool = ThreadPoolExecutor(
            max_workers=settings.EXECUTION_FANOUT_THREADS, thread_name_prefix="tvtrader-fanout"
        )
        self.watched: dict[str, _Watch] = {}
        self.parked: dict[int, _Parked] = {}
        self.waiters: dict[int, set[int]] = {}
        self.finished_recently: dict[int, float] = {}
        self.early: dict[str, tuple[float, OrderState]] = {}
        self.sending = _HostView(self, defer_replies=True)
        self.following = _HostView(self, defer_replies=False)
        self.stopping = False
        self.timer.after(LEASE_RENEW_SECONDS, self._renew_leases)

    # --- signals in ---------------------------------------------------------------------

    def run_signal(self, signal_id: int, *, on_pool: bool = False) -> None:
        """Claim and run a signal on this thread (a pool thread, or a follower running what
        waited for a finished signal)."""
        if self.stopping:
            return
        if not on_pool:
            close_old_connections()
        with pacing.SendPhase() as phase:
            claimed = execute.execute(signal_id, host=self.sending if on_pool else self.following, phase=phase)
        if claimed.run is not None:
            return
        if claimed.blocked_by:
            self._wait_for(claimed.blocked_by, signal_id)
        elif claimed.held_until:
            self.timer.after(claimed.held_until - time.time() + 0.01, self._submit, self.run_signal, signal_id)

    def _wait_for(self, blocker_id: int, signal_id: int) -> None:
        """`signal_id` waits for `blocker_id`: run it here when that finishes in this process.
        (When it finishes elsewhere, that worker wakes it through the outbox.)"""
        with self.lock:
            if blocker_id in self.finished_recently:
                again = True
            else:
                self.waiters.setdefault(blocker_id, set()).add(signal_id)
                again = False
        if again:  # finished between our claim and now
            self._submit(self.run_signal, signal_id)

    def fan_out(self, signal_ids: list[int]) -> None:
        """Start the runs of a fanned-out alert (engine.fanout) at once, in parallel."""
        for signal_id in signal_ids:
            try:
                self.fanout_pool.submit(self._guarded, self._run_child, signal_id)
            except RuntimeError:  # shut down: the sweeper brings them back
                return

    def _run_child(self, signal_id: int) -> None:
        close_old_connections()
        self.run_signal(signal_id, on_pool=True)

    def _submit(self, fn, *args, **kwargs) -> None:
        try:
            self.pool.submit(self._guarded, fn, *args, **kwargs)
        except RuntimeError:  # the pool is shut down: the worker is stopping
            pass

    @staticmethod
    def _guarded(fn, *args, **kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            logger.exception("event=worker_task_failed task=%s", getattr(fn, "__name__", fn))

    # --- execute.Host -------------------------------------------------------------------

    def handoff(self, run: Run, order: Order) -> bool:
        account = run.account
        watch = _Watch(
            order_id=order.pk,
            client_order_id=order.client_order_id,
            signal_id=run.pk,
            account_id=account.pk,
            paper=run.signal.is_test or account.is_paper,
            scratch=run.signal.is_test,
            book_positions=run.book_positions,
            order_type=order.order_type,
            limit_deadline=(
                time.monotonic() + float(run.strategy.limit_timeout_seconds)
                if order.order_type == "limit" and run.strategy.limit_timeout_seconds
                else None
            ),
        )
        reply, run.pending_reply = run.pending_reply, None
        with self.lock:
            parked = self.parked.get(run.pk)
            if parked is None:
                parked = self.parked[run.pk] = _Parked(run.pk, run.token, run.signal.strategy_key, run.claimed_mono)
            parked.token, parked.retries = run.token, 0
            parked.watches.add(order.client_order_id)
            self.watched[order.client_order_id] = watch
            early = self.early.pop(order.client_order_id, None)
        streamed = not watch.paper and _streams().ensure_watching(account)
        logger.info(
            run.log("signal_follow_later", order=f"{order.client_order_id}:{order.status}", stream=streamed or "-")
        )
        if reply is not None:
            # What the stream said before the handoff (often the fill, which can beat the
            # create's own reply) is applied with the reply, not dropped for a fallback poll.
            self._submit(self._record_reply, watch, parked, reply, early[1] if early else None)
        elif early is not None:
            self._submit(self._apply, watch, early[1])
        else:
            self._schedule_poll(watch, streamed=streamed)
        return True

    def finished(self, signal: Signal) -> None:
        now = time.monotonic()
        with self.lock:
            self.finished_recently[signal.pk] = now
            if len(self.finished_recently) > 1000:
                self.finished_recently = {k: v for k, v in self.finished_recently.items() if now - v < 60}
            parked = self.parked.pop(signal.pk, None)
            if parked is not None:
                for cid in parked.watches:
                    self.watched.pop(cid, None)
            waiting = self.waiters.pop(signal.pk, set())
        for signal_id in sorted(waiting):
            self._submit(self.run_signal, signal_id)
        try:
            outbox.wake_next(signal, skip=frozenset(waiting))
        except DatabaseError:
            logger.warning("event=wake_next_failed signal=%s (the sweeper will find it)", signal.pk)

    def retry(self, run: Run, seconds: float, reason: str) -> None:
        with self.lock:
            parked = self.parked.get(run.pk)
            if parked is None:
                parked = self.parked[run.pk] = _Parked(run.pk, run.token, run.signal.strategy_key, run.claimed_mono)
            parked.token = run.token
            parked.retries += 1
            delay = max(seconds, RETRY_BACKOFF[min(parked.retries - 1, len(RETRY_BACKOFF) - 1)])
            if reason != "database":
                delay = seconds
        logger.info(run.log("signal_retry_scheduled", reason=reason, after_s=delay))
        self.timer.after(delay, self._submit, self.carry_on, run.pk)

    # --- what the venue says ------------------------------------------------------------

    def on_order(self, account_id: int, state: OrderState) -> None:
        """From the stream thread: cheap, never blocks."""
        if state.status in ("filled", "cancelled") and protect.is_protective_id(state.client_order_id):
            # A stop / take-profit the venue fired (or cancelled): booked now, not at the next sweep.
            self._submit(protect.protective_seen, client_order_id=state.client_order_id, account_id=account_id)
            return
        with self.lock:
            watch = self.watched.get(state.client_order_id)
            if watch is None:
                # Possibly ours and not handed over yet (the stream can beat the create's own
                # reply): kept briefly for handoff to pick up.
                now = time.monotonic()
                self.early[state.client_order_id] = (now, state)
                if len(self.early) > 500:
                    self.early = {k: v for k, v in self.early.items() if now - v[0] < EARLY_STATES_KEEP_SECONDS}
                return
        self._submit(self._apply, watch, state)

    def on_gap(self, account_id: int) -> None:
        """Updates of the account may have been missed: look at each of its orders once."""
        with self.lock:
            watches = [w for w in self.watched.values() if w.account_id == account_id]
        for watch in watches:
            self._submit(self._poll, watch, scheduled=False)

    def _record_reply(self, watch: _Watch, parked: _Parked, reply, streamed: OrderState | None = None) -> None:
        order, state, sent_at, acked_at = reply
        if not _is_final(state) and not _is_final(streamed) and watch.signal_id not in self.waiters:
            # An acknowledgement alone is not urgent next to an order still on its way out:
            # during a burst it is recorded once the sends pause. A final state is, and so is
            # an acknowledgement something here waits for (an entry behind an entry may go
            # once it is recorded: signals.ordering), so those are recorded at once.
            pacing.sends_first()
        close_old_connections()
        send.record_sent_for(signal_id=watch.signal_id, strategy_key=parked.strategy_key, order=order, sent_at=sent_at)
        status = ledger.order_apply_state(
            order=order, state=state, book_positions=watch.book_positions, reply=True, acked_at=acked_at
        )
        if streamed is not None and status not in Order.TERMINAL_STATUSES:
            status = ledger.order_apply_state(order=order, state=streamed, book_positions=watch.book_positions)
        self._after_state(watch, status)

    def _apply(self, watch: _Watch, state: OrderState) -> None:
        close_old_connections()
        if watch.client_order_id not in self.watched:
            return
        status = ledger.order_apply_state(
            order=Order(pk=watch.order_id), state=state, book_positions=watch.book_positions
        )
        self._after_state(watch, status, from_stream=True)

    def _after_state(self, watch: _Watch, status: str, *, from_stream: bool = False) -> None:
        if status in Order.TERMINAL_STATUSES:
            with self.lock:
                self.watched.pop(watch.client_order_id, None)
                parked = self.parked.get(watch.signal_id)
                if parked is not None:
                    parked.watches.discard(watch.client_order_id)
            self.carry_on(watch.signal_id)
        elif status in (Order.Status.SUBMITTING, Order.Status.UNKNOWN):
            self.carry_on(watch.signal_id)  # the run resolves it
        else:
            # Acknowledged: what waits for this signal may not need its fill (signals.ordering);
            # each waiter claims again, and waits again if it does.
            self._wake_waiters(watch.signal_id)
            if not from_stream:
                self._schedule_poll(watch, streamed=not watch.paper and _streams().is_healthy(watch.account_id))

    def _wake_waiters(self, signal_id: int) -> None:
        with self.lock:
            waiting = self.waiters.pop(signal_id, set())
        for waiter in sorted(waiting):
            self._submit(self.run_signal, waiter)

    def _schedule_poll(self, watch: _Watch, *, streamed: bool) -> None:
        delay = FOLLOW_BACKOFF[min(watch.polls, len(FOLLOW_BACKOFF) - 1)]
        if streamed:
            delay = max(delay, STREAM_FALLBACK_POLL_SECONDS)
        if watch.limit_deadline is not None:
            delay = min(delay, max(0.05, watch.limit_deadline - time.monotonic()))  # never past the timeout
        self.timer.after(delay, self._submit, self._poll, watch)

    def _poll(self, watch: _Watch, *, scheduled: bool = True) -> None:
        if watch.client_order_id not in self.watched or self.stopping:
            return
        close_old_connections()
        order = Order.objects.select_related("strategy", "account").filter(pk=watch.order_id).first()
        if order is None:
            return
        if order.is_terminal:
            self._after_state(watch, order.status)
            return
        gateway = gateway_for(order.account, scratch=watch.scratch)
        if scheduled:
            watch.polls += 1
        state = order_look(gateway, order, limit_timeout_seconds=order.strategy.limit_timeout_seconds)
        if state is None:
            if scheduled:
                self._schedule_poll(watch, streamed=False)
            return
        status = ledger.order_apply_state(order=order, state=state, book_positions=watch.book_positions)
        if status not in Order.TERMINAL_STATUSES and not scheduled:
            return  # a one-off look (a stream gap): the scheduled polls go on
        self._after_state(watch, status)

    # --- carrying runs on -----------------------------------------------------------------

    def carry_on(self, signal_id: int) -> None:
        """Take a parked run its next step (on a follower thread): one at a time per signal."""
        with self.lock:
            parked = self.parked.get(signal_id)
            if parked is None:
                return
            if parked.busy:
                parked.again = True
                return
            parked.busy = True
        try:
            while True:
                close_old_connections()
                try:
                    run = claims.resume(signal_id, token=parked.token)
                except DatabaseError as exc:
                    with self.lock:
                        parked.retries += 1
                        delay = RETRY_BACKOFF[min(parked.retries - 1, len(RETRY_BACKOFF) - 1)]
                    logger.warning(
                        "event=signal_resume_db_error signal=%s error=%s retry_in_s=%s",
                        signal_id,
                        type(exc).__name__,
                        delay,
                    )
                    close_old_connections()
                    self.timer.after(delay, self._submit, self.carry_on, signal_id)
                    return
                if run is None:  # final (or gone)
                    with self.lock:
                        self.parked.pop(signal_id, None)
                    return
                run.claimed_mono = parked.claimed_mono
                execute.run_stages(run, self.following)
                with self.lock:
                    if not parked.again:
                        return
                    parked.again = False
        finally:
            with self.lock:
                parked.busy = False

    def _renew_leases(self) -> None:
        """Keep the leases of parked runs alive (a run that waits on a resting limit order
        may wait minutes); drop the ones another worker took over."""
        if self.stopping:
            return
        with self.lock:
            parked = [(p.signal_id, p.token) for p in self.parked.values() if not p.busy]
        self._submit(self._renew, parked)
        self.timer.after(LEASE_RENEW_SECONDS, self._renew_leases)

    def _renew(self, parked: list[tuple[int, int]]) -> None:
        close_old_connections()
        lease_until = claims.lease_until()
        for signal_id, token in parked:
            kept = Signal.objects.filter(pk=signal_id, status=Signal.Status.PROCESSING, attempts=token).update(
                lease_until=lease_until
            )
            if not kept:
                with self.lock:
                    gone = self.parked.get(signal_id)
                    if gone is not None and gone.token == token and not gone.busy:
                        self.parked.pop(signal_id, None)
                        for cid in gone.watches:
                            self.watched.pop(cid, None)

    def stop(self) -> None:
        """The worker is shutting down: give every parked run back at once (lease ends now),
        so the next worker resumes them instead of waiting for the leases to run out."""
        self.stopping = True
        pacing.stopping.set()
        self.timer.stop()
        try:
            from execution.exchanges.streams import stop_streams

            stop_streams(timeout=2.0)
        except Exception:
            logger.warning("event=streams_stop_failed", exc_info=True)
        with self.lock:
            parked = [(p.signal_id, p.token, p.strategy_key) for p in self.parked.values()]
        try:
            from django.utils import timezone

            for signal_id, token, strategy_key in parked:
                if Signal.objects.filter(pk=signal_id, status=Signal.Status.PROCESSING, attempts=token).update(
                    lease_until=timezone.now()
                ):
                    logger.info(
                        "event=signal_follow_released strategy=%s signal=%s reason=worker shutting down",
                        strategy_key or "-",
                        signal_id,
                    )
        except DatabaseError:
            logger.warning("event=worker_release_failed count=%d", len(parked))
        finally:
            connection.close()


def _is_final(state: OrderState | None) -> bool:
    return state is not None and ledger.STATUS_MAP.get(state.status) in Order.TERMINAL_STATUSES


_worker: Worker | None = None
_worker_lock = threading.Lock()


def worker() -> Worker:
    global _worker
    if _worker is None:
        with _worker_lock:
            if _worker is None:
                _worker = Worker()
                streams = _streams()
                streams.add_listener(_worker)
    return _worker


def _streams():
    from execution.exchanges.streams import stream_manager

    return stream_manager()


def signal_execute(*, signal_id: int, follow_in_background: bool = False) -> None:
    """Run a signal. The worker's task passes `follow_in_background`: this thread claims,
    plans and sends, and the process's Worker follows (module docstring). Called directly,
    the run follows its orders here before returning."""
    if follow_in_background:
        worker().run_signal(signal_id, on_pool=True)
        return
    with pacing.SendPhase() as phase:
        execute.execute(signal_id, phase=phase)


def followers_stop() -> None:
    if _worker is not None:
        _worker.stop()
    else:
        pacing.stopping.set()


# --- start-up --------------------------------------------------------------------------------


def _traded_accounts():
    return ExchangeAccount.objects.filter(strategies__enabled=True).exclude(mode=ExchangeAccount.Mode.PAPER).distinct()


def gateways_warm() -> int:
    """Load markets for every account an enabled strategy trades on, and start following
    their order streams (worker start-up)."""
    warmed = 0
    accounts = list(_traded_accounts())
    for account in accounts:
        try:
            gateway = gateway_for(account)
            warm = getattr(gateway, "warm", None)
            if warm:
                warm()
                warmed += 1
        except Exception as exc:
            logger.warning("event=warm_failed account=%s error=%s", account.label, str(exc)[:200])
    try:
        from execution.exchanges.streams import start_streams

        start_streams(accounts, listeners=[worker()])
    except Exception as exc:
        logger.warning("event=streams_start_failed error=%s", str(exc)[:200])
    return warmed


def traded_account_ids() -> list[int]:
    return list(_traded_accounts().values_list("pk", flat=True))


def thread_warm(account_ids: list[int], barrier: threading.Barrier | None) -> None:
    """Open this pool thread's database connection, warm and prepare the hot-path
    statements on it, and check out a ccxt client for each account, so the first burst
    after a start pays for none of it (each new thread would otherwise connect to
    PostgreSQL, plan every statement and build its exchange client while an alert waits)."""
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
