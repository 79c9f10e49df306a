"""Follow-ups wait while this process has orders on their way out, and go once the sends
pause (engine.pacing): woken by the last send ending, never later than their bound."""

import threading
import time

import pytest

from execution.engine import pacing


@pytest.fixture(autouse=True)
def running():
    """A worker that is not stopping (another test may have stopped this process's engine)."""
    was = pacing.stopping.is_set()
    pacing.stopping.clear()
    yield
    if was:
        pacing.stopping.set()


def test_a_follow_up_waits_for_the_sends_then_the_quiet_period_and_no_longer():
    phase = pacing.SendPhase().__enter__()
    done = threading.Event()

    def follow_up():
        pacing.sends_first(max_wait=10)
        done.set()

    thread = threading.Thread(target=follow_up)
    thread.start()
    assert not done.wait(0.2)  # a send is on its way out
    ended = time.monotonic()
    phase.end()
    assert done.wait(5)
    waited = time.monotonic() - ended
    assert waited >= pacing.SEND_QUIET_SECONDS * 0.9  # the quiet period after the last send
    thread.join()


def test_a_follow_up_never_waits_past_its_bound():
    phase = pacing.SendPhase().__enter__()
    try:
        started = time.monotonic()
        pacing.sends_first(max_wait=0.1)
        assert 0.1 <= time.monotonic() - started < 5
    finally:
        phase.end()
