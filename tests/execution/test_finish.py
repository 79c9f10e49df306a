"""Finishing a signal: only the run that owns it (its fencing token) can, in one statement
that also hands back the row as written (the notification reads the latency chain from it)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from execution.engine import statements
from signals.models import Signal
from tests.factories import SignalFactory

pytestmark = pytest.mark.django_db


def test_only_the_owning_run_finishes_and_the_signal_in_hand_is_the_row_as_written():
    now = timezone.now()
    signal = SignalFactory(status=Signal.Status.PROCESSING, attempts=2, sent_at=now, lease_until=now)
    first, last = now + timedelta(milliseconds=5), now + timedelta(milliseconds=9)

    # A run whose lease was taken over (token 1) writes nothing.
    assert not statements.signal_finish(
        signal, token=1, status="executed", now=now, reason="", fill_times=(first, last)
    )
    assert Signal.objects.get(pk=signal.pk).status == Signal.Status.PROCESSING

    Signal.objects.filter(pk=signal.pk).update(acked_at=now)  # written meanwhile by the ledger
    assert statements.signal_finish(
        signal, token=2, status="partial", now=now, reason="leg 2: cancelled", fill_times=(first, last)
    )
    stored = Signal.objects.get(pk=signal.pk)
    assert (stored.status, stored.reason, stored.finished_at, stored.lease_until) == (
        "partial",
        "leg 2: cancelled",
        now,
        None,
    )
    assert (stored.first_fill_at, stored.filled_at) == (first, last)
    assert (signal.status, signal.reason, signal.acked_at, signal.filled_at) == (
        "partial",
        "leg 2: cancelled",
        now,
        last,
    )

    # A final signal is never finished again.
    assert not statements.signal_finish(signal, token=2, status="failed", now=now, reason="", fill_times=None)
