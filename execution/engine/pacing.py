"""Send first, follow later: this process's orders on their way out go before follow-ups.

Following an acknowledged order (polls, fills, positions) costs several times the Python of
sending it, and a worker's pool threads share one interpreter lock: in a burst the
follow-ups of the first orders used to delay the sends of the last ones by seconds. So runs
count themselves while they may still send (`SendPhase`), and follow-ups wait, briefly,
while any are on their way out (`sends_first`).
"""

from __future__ import annotations

import threading
import time

# How long a follow-up waits for this process's outgoing orders before it polls anyway.
FOLLOW_YIELD_MAX_SECONDS = 2.0
SEND_QUIET_SECONDS = 0.02

_lock = threading.Lock()
# Notified when the last run that may send ends, so a waiting follow-up wakes on that (and
# once more when the quiet period is over) instead of polling every few milliseconds.
_idle = threading.Condition(_lock)
_sends_in_progress = 0
_last_send_activity = 0.0
stopping = threading.Event()


class SendPhase:
    """Counts this process's signal runs that may still send an order."""

    def __init__(self) -> None:
        self.open = False

    def __enter__(self) -> SendPhase:
        global _sends_in_progress, _last_send_activity
        with _lock:
            _sends_in_progress += 1
            _last_send_activity = time.monotonic()
        self.open = True
        return self

    def end(self) -> None:
        global _sends_in_progress, _last_send_activity
        if self.open:
            self.open = False
            with _lock:
                _sends_in_progress -= 1
                _last_send_activity = time.monotonic()
                if _sends_in_progress == 0:
                    _idle.notify_all()

    def __exit__(self, *_exc) -> None:
        self.end()


def sends_first(max_wait: float = FOLLOW_YIELD_MAX_SECONDS) -> None:
    """Wait (bounded) while this process has orders on their way out, and a little after the
    last one (the next alert of a burst is usually a few milliseconds behind)."""
    deadline = time.monotonic() + max_wait
    with _idle:
        while not stopping.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            if _sends_in_progress > 0:
                _idle.wait(deadline - now)
                continue
            quiet_left = SEND_QUIET_SECONDS - (now - _last_send_activity)
            if quiet_left <= 0:
                return
            _idle.wait(min(quiet_left, deadline - now))
