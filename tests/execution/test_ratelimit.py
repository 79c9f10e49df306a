"""The order-rate bucket is shared by processes: several processes acquiring at once never
get more than the limit into any rolling second."""

import json
import os
import subprocess
import sys
import time

from django.conf import settings

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
    order_slot_acquire(bucket_key=sys.argv[2], per_second=Decimal("5"), timeout=30)
    out.append(time.time())
print(json.dumps(out))
"""


def test_four_processes_share_one_limit():
    from signals.selectors import redis_client

    key = f"test-{os.getpid()}-{time.monotonic_ns()}"
    redis_client().delete(f"tvtrader:ratelimit:{key}")
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
