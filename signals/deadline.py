"""The webhook's answer deadline: TradingView gives up at 3 s, so a database that hangs
(packets dropped, a stalled disk, a lock) must turn into a 503 well before that.

A refused or reset connection fails fast on its own; a silent one does not: libpq's connect
timeout cannot go below 2 s, and a query on a connection whose packets vanish waits for
TCP, for minutes. So the webhook arms a timer (`WEBHOOK_DEADLINE_SECONDS`) around its
database work. When it fires, the database connection is severed (its socket shut down, so
whatever waits on it — the query, the rollback after it — fails at once instead of
waiting in turn) and `DeadlineExceeded` is raised in the request.

SIGALRM interrupts a blocked `select` in the main thread, which is where gunicorn's sync
workers run the view; elsewhere (a threaded dev server) no deadline is armed.

Under a stream of alerts a deadline per request is not enough: a sync worker that waits out
its deadline on every request serves one alert per deadline, and the rest queue in front
of it, past TradingView's 3 s. So after a timeout a web worker holds the database as
suspect: for `SUSPECT_HOLD_OFF` it answers 503 at once, then it tries again with a short
deadline, until the database answers (a healthy one answers in milliseconds). And a request
that already waited upstream (nginx's request start) gets only what is left of its budget.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from contextlib import contextmanager

from django.db import connection

from .models import Signal


class DeadlineExceeded(BaseException):
    """The database did not answer within the webhook's deadline. A BaseException, like
    KeyboardInterrupt: no `except Exception` on the way (a counter that must never fail a
    request) may swallow it and go on to wait for the database again."""


class Deadline:
    """What happened before the deadline: whether a signal row was written (the alert may
    then be recorded after all: its resend is answered `duplicate`) and whether it fired."""

    def __init__(self) -> None:
        self.wrote = False
        self.fired = False
        self._table = f'"{Signal._meta.db_table}"'

    def _watch(self, execute, sql, params, many, context):
        if not self.wrote and sql.lstrip()[:6].upper() in ("INSERT", "UPDATE") and self._table in sql[:80]:
            self.wrote = True
        return execute(sql, params, many, context)


def _sever_connection() -> None:
    raw = connection.connection
    try:
        fd = raw.pgconn.socket if raw is not None else -1
    except Exception:  # closed already, or not PostgreSQL
        return
    try:
        sock = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


SUSPECT_HOLD_OFF = 0.5
SUSPECT_DEADLINE = 0.5
_suspect_since: float | None = None  # time.monotonic() of the last timeout; None: it answered


def webhook_budget(*, deadline: float, waited: float) -> float:
    """Seconds the database may take for this request; 0: answer 503 now without asking it
    (it timed out a moment ago, or the request waited upstream past its deadline)."""
    if _suspect_since is not None:
        if time.monotonic() < _suspect_since + SUSPECT_HOLD_OFF:
            return 0.0
        deadline = min(deadline, SUSPECT_DEADLINE)
    left = deadline - max(waited, 0.0)
    return left if left >= 0.05 else 0.0


def database_outcome(*, timed_out: bool) -> None:
    """Record how the database did for this request (see `webhook_budget`)."""
    global _suspect_since
    _suspect_since = time.monotonic() if timed_out else None


@contextmanager
def webhook_deadline(seconds: float):
    """Arm the deadline around the block (main thread only). Yields a `Deadline`."""
    state = Deadline()
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        with connection.execute_wrapper(state._watch):
            yield state
        return

    def _fire(signum, frame):
        state.fired = True
        # Later waits on the same connection (the rollback an atomic block attempts on the
        # way out) fail at once on a severed socket.
        _sever_connection()
        raise DeadlineExceeded(f"no answer from the database within {seconds:g} s")

    previous_handler = signal.signal(signal.SIGALRM, _fire)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    armed_at = time.monotonic()
    try:
        with connection.execute_wrapper(state._watch):
            yield state
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:  # someone else's timer (a test runner's): give back what is left
            signal.setitimer(signal.ITIMER_REAL, max(previous_delay - (time.monotonic() - armed_at), 0.001))
