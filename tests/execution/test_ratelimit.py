"""The order-rate bucket is shared by processes: several processes acquiring at once never
get more than the limit into any rolling second. Slots are judged by the times the bucket
stamped them with (Redis's clock), so a busy machine cannot make these tests flaky; whether a
stale slot is ever used for a request is the send stage's check (slot_is_fresh)."""

import json
import os
import subprocess
import sys
import time

from django.conf import settings

from execution.ratelimit import order_slot_acquire

SCRIPT = """
import json, os, sys, time, django
django.setup()
from decimal import Decimal
from execution.ratelimit import order_slot_acquire
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
out = []
for _ in range(6):
    out.append(order_slot_acquire(bucket_key=sys.argv[2], per_second=Decimal("5"), timeout=30))
print(json.dumps(out))
"""


def test_four_processes_share_one_limit():
    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    key = f"test-{os.getpid()}-{time.monotonic_ns()}"
    redis_client().delete(rkey("ratelimit", key))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="tvtrader.settings",
        REDIS_URL=settings.REDIS_URL,
        TVTRADER_VAR_DIR=str(settings.VAR_DIR),
    )
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(start), key], env=env, stdout=subprocess.PIPE, cwd=settings.BASE_DIR
        )
        for _ in range(4)
    ]
    times = sorted(t for p in procs for t in json.loads(p.communicate(timeout=60)[0]))
    assert len(times) == 24
    busiest = max(sum(1 for t in times[i:] if t - begin < 1.0) for i, begin in enumerate(times))
    assert busiest <= 5
    # ...and the limit is used, not starved: 24 slots at 5/s take about 5 s, not much more.
    assert times[-1] - times[0] < 7.5


def test_many_threads_of_one_worker_share_the_limit_and_use_it():
    """A worker's pool threads all waiting on one account's bucket: never more than the
    limit in any rolling second, and the limit is used, not wasted on the waiting."""
    import threading
    from decimal import Decimal

    from tvtrader.redisconn import key as rkey
    from tvtrader.redisconn import redis_client

    key = f"test-threads-{os.getpid()}-{time.monotonic_ns()}"
    redis_client().delete(rkey("ratelimit", key))
    times: list[float] = []

    def take() -> None:
        for _ in range(3):
            stamp = order_slot_acquire(bucket_key=key, per_second=Decimal("20"), timeout=30)
            assert stamp
            times.append(stamp)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    times.sort()
    assert len(times) == 48
    assert max(sum(1 for t in times[i:] if t - begin < 1.0) for i, begin in enumerate(times)) <= 20
    # Spaced evenly, and the limit used: with callers always waiting, the typical gap between
    # two slots is the spacing (1/20 s stretched by the guard), not more.
    spacing = (1 + settings.ORDER_RATE_GUARD_MS / 1000) / 20
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    assert gaps[0] >= spacing - 0.001
    assert gaps[len(gaps) // 2] < spacing * 1.5


def test_a_kill_switch_engaged_while_an_order_waits_for_its_slot_stops_it_unsent(transactional_db):
    """The account's bucket is full, so the signal's first order waits for a slot; the
    trader engages the kill switch meanwhile. The order must not go out: it is on record as
    cancelled, never sent, and the paper exchange saw nothing."""
    import threading
    from decimal import Decimal

    from django.db import connection

    from execution.models import Fill, Order
    from execution.ratelimit import order_slot_acquire
    from execution.services import signal_execute
    from signals.models import Signal
    from strategies.services import strategy_halt
    from tests.conftest import wait_for
    from tests.factories import ExchangeAccountFactory, SignalFactory, StrategyFactory

    account = ExchangeAccountFactory(max_orders_per_second=Decimal("1"))
    strategy = StrategyFactory(account=account)
    signal = SignalFactory(strategy=strategy, action="buy", volume=Decimal("0.01"))
    assert order_slot_acquire(bucket_key=account.rate_limit_key, per_second=Decimal("1"))  # the next is ~1 s away

    def execute() -> None:
        try:
            signal_execute(signal_id=signal.pk)
        finally:
            connection.close()  # this thread's own connection

    run = threading.Thread(target=execute)
    run.start()
    wait_for(lambda: Signal.objects.get(pk=signal.pk).status == Signal.Status.PROCESSING, message="the claim")
    strategy_halt(strategy=strategy, actor="test", reason="stop now")
    run.join(timeout=30)

    order = Order.objects.get(signal=signal)
    assert order.status == Order.Status.CANCELLED
    assert order.reason.startswith("not sent") and "kill switch" in order.reason
    assert order.submit_count == 0 and order.submitted_at is None
    assert not Fill.objects.filter(order=order).exists()
    signal.refresh_from_db()
    assert signal.status == Signal.Status.BLOCKED and "kill switch" in signal.reason
    assert signal.sent_at is None


def test_the_bucket_survives_a_redis_that_forgot_its_scripts():
    """A Redis restarted empty (restart, OOM kill, failover) has no scripts loaded: every
    EVALSHA answers NOSCRIPT. Orders must keep flowing (the script is loaded again)."""
    from decimal import Decimal

    from tvtrader.redisconn import redis_client

    key = f"test-noscript-{os.getpid()}-{time.monotonic_ns()}"
    assert order_slot_acquire(bucket_key=key, per_second=Decimal("100"), timeout=5)
    redis_client().script_flush()
    assert order_slot_acquire(bucket_key=key, per_second=Decimal("100"), timeout=5)
