"""One order-rate bucket per venue API key, shared by every worker process and host through
Redis: a sliding log, so no rolling window ever holds more than the limit. Callers block
until a slot frees up: a burst is smoothed under the venue's limit instead of rejected.

Two things make the limit hold where the venue counts (requests as they arrive), not only
in our bucket:
- The log is stamped with Redis's own clock, inside the script (`TIME`), never with a
  caller's clock reading: a caller that stalls between reading its clock and asking (CPU
  contention on a small VPS) cannot stamp its slot in the past and squeeze an extra one
  into the window.
- A slot is fresh only for ORDER_RATE_GUARD_MS after it was granted. The window is widened
  by that guard, and a caller that took longer than the guard to get its answer, or to get
  from the answer to the request leaving (`slot_is_fresh`, checked by the send stage right
  before the request is signed), takes another slot rather than send on a stale one.
Low limits (the venues' per-account order limits) also space slots evenly, so a burst is
not N simultaneous requests competing for the same CPU.

The script runs through redis-py's `Script`, which loads it again when Redis answers
NOSCRIPT: a Redis restarted empty (a restart, an OOM kill, a failover) does not stop orders.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from decimal import Decimal

from redis.commands.core import Script

# The log: members are unique per grant, scores are Redis server time in microseconds.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local spacing = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local wait = 0
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
if spacing > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if last[1] then
    local after_last = tonumber(last[2]) + spacing - now
    if after_last > wait then wait = after_last end
  end
end
if wait > 0 then
  return {0, wait}
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
return {1, now}
"""
# Up to this many orders a second, slots are evenly spaced (see the module docstring).
SPACED_UP_TO = 50

_script: Script | None = None
_script_lock = threading.Lock()
_members = itertools.count()
_waiting: dict[str, threading.Lock] = {}
_granted = threading.local()


def guard_ms() -> int:
    from django.conf import settings

    return int(settings.ORDER_RATE_GUARD_MS)


def _acquire_script() -> Script:
    global _script
    if _script is None:
        with _script_lock:
            if _script is None:
                from tvtrader.redisconn import redis_client

                _script = redis_client().register_script(_SCRIPT)
    return _script


def _terms(per_second: Decimal) -> tuple[int, int, int]:
    """(limit, window µs, spacing µs). Fractional limits below 1/s become one per 1/rate s."""
    guard_us = guard_ms() * 1000
    if per_second < 1:
        return 1, int(1_000_000 / float(per_second)) + guard_us, 0
    limit = int(per_second)
    window = 1_000_000 + guard_us
    return limit, window, (window // limit if per_second <= SPACED_UP_TO else 0)


def order_slot_acquire(*, bucket_key: str, per_second: Decimal | float, timeout: float = 120.0) -> float | None:
    """Block until this venue API key may send one more order (or `timeout` passes). Returns
    the slot's time (Redis server clock, seconds) or None on timeout. `bucket_key` is
    `ExchangeAccount.rate_limit_key`: the venue counts per API key, so two account rows
    using one key share one bucket.

    Where slots are spaced, one thread per process waits on the bucket and the others wait
    for it: otherwise every waiting thread wakes at each slot and asks Redis, and the
    winner's request competes with that crowd for the interpreter on its way out."""
    if not per_second or per_second <= 0:
        _granted.at = time.monotonic()
        return time.time()
    from tvtrader.redisconn import key

    per_second = Decimal(per_second)
    limit, window, spacing = _terms(per_second)
    redis_key = key("ratelimit", bucket_key)
    guard = guard_ms() / 1000
    deadline = time.monotonic() + timeout
    lock = None
    if spacing:
        lock = _waiting.get(redis_key) or _waiting.setdefault(redis_key, threading.Lock())
        if not lock.acquire(timeout=max(0.0, timeout)):
            return None
    try:
        member_prefix = f"{os.getpid()}:{threading.get_ident()}:"
        while True:
            asked = time.monotonic()
            granted, value = _acquire_script()(
                keys=[redis_key], args=[limit, window, spacing, member_prefix + str(next(_members))]
            )
            answered = time.monotonic()
            if granted:
                if answered - asked > guard:
                    continue  # the answer took longer than the guard: this slot may be stale
                _granted.at = answered
                return int(value) / 1_000_000
            remaining = deadline - answered
            if remaining <= 0:
                return None
            time.sleep(min(int(value) / 1_000_000, remaining))
    finally:
        if lock is not None:
            lock.release()


def slot_is_fresh() -> bool:
    """Whether this thread's last slot was granted less than the guard ago: checked right
    before a request leaves; a stale slot (the thread stalled since) must be taken again."""
    granted = getattr(_granted, "at", None)
    return granted is not None and time.monotonic() - granted <= guard_ms() / 1000
