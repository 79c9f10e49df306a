"""The whole fault suite: `make chaos` (CHAOS_ROUNDS=3 runs it three times in a row). Not
collected by `make test` (the file name does not start with test_); its fast subset is
tests/faults/test_faults.py. Prints one table row per scenario; docs/operations.md keeps the
figures of the last full run."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings

from emulator.markets import default_markets
from signals.models import Signal
from tests.conftest import alert_body, wait_for
from tests.processes import http_post

from .conftest import ROWS
from .harness import SecondInstall, World, run_scenario

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="the proxy stands in front of PostgreSQL",
)
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))
ONLY = os.environ.get("CHAOS_ONLY", "")  # run only the scenarios whose name contains this


def database(mode: str, seconds: float):
    def fault(world: World) -> None:
        getattr(world.db_proxy, mode)()
        time.sleep(seconds)
        world.db_proxy.restore()

    return fault


def exchange_faults(world: World) -> None:
    """The venue misbehaving for a few seconds: 5xx before and after booking, a create that
    times out after booking (and is invisible to lookups for a moment), rate-limit replies,
    connections dropped."""
    emu = world.emu
    emu.add_fault("http_5xx_before_booking", "create_order", count=4, status=503)
    emu.add_fault("http_5xx_after_booking", "create_order", count=3, status=502)
    emu.add_fault("timeout_after_booking", "create_order", count=3, ms=3000)
    emu.add_fault("invisible_for_ms", "create_order", count=2, ms=2500)
    emu.add_fault("http_status", "create_order", count=4, status=429)
    emu.add_fault("drop_connection", "create_order", count=2, when="after")
    emu.add_fault("http_5xx_before_booking", "query_order", count=4, status=503)
    time.sleep(4)
    emu.clear_faults()


def everything(world: World) -> None:
    """All at once, overlapping: the exchange faulty, the database reset, Redis restarted
    empty, the worker and the web process killed."""
    threading.Thread(target=exchange_faults, args=(world,), daemon=True).start()
    world.db_proxy.reset()
    time.sleep(2)
    world.db_proxy.restore()
    world.redis_restart_empty(down=1.0)
    world.worker_restart(down=0.5)
    world.web_restart(down=0.5)
    world.db_proxy.blackhole()
    time.sleep(3)
    world.db_proxy.restore()


# name, fault, stream (alerts, alerts a second), answer limit (None: while no web process
# runs), seconds after the fault by which every accepted alert must be final
SCENARIOS = [
    ("no fault", None, 120, 12.0, 3.0, 30),
    ("redis killed, restarted empty", World.redis_restart_empty, 120, 12.0, 3.0, 30),
    ("database refuses 5 s", database("cut", 5.0), 120, 12.0, 3.0, 30),
    ("database resets 5 s", database("reset", 5.0), 120, 12.0, 3.0, 30),
    ("database silent 35 s", database("blackhole", 35.0), 540, 10.0, 3.0, 30),
    ("worker SIGKILL twice", lambda w: (w.worker_restart(), time.sleep(2), w.worker_restart()), 120, 12.0, 3.0, 30),
    ("web SIGKILL", World.web_restart, 120, 12.0, None, 30),
    ("exchange faults", exchange_faults, 120, 12.0, 3.0, 30),
    # Everything at once leaves a backlog of a stream that ran through two restarts.
    ("all at once", everything, 240, 12.0, None, 60),
]


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_every_scenario_settles_with_every_invariant_kept(transactional_db, tmp_path, round_):
    world = World(tmp_path)
    try:
        broken = {}
        for name, fault, alerts, rate, answer_limit, settle_within in SCENARIOS:
            if ONLY and ONLY not in name:
                continue
            report = run_scenario(
                world, name, fault, alerts=alerts, rate=rate, answer_limit=answer_limit, settle_timeout=120
            )
            ROWS.append({"round": str(round_), **report.row()})
            if report.violations:
                broken[name] = report.violations
            elif report.recovery_seconds is None or report.recovery_seconds > settle_within:
                broken[name] = [f"recovered in {report.recovery_seconds} s"]
        assert not broken, broken
    finally:
        world.close()


def test_two_installs_on_one_redis_each_execute_only_their_own(transactional_db, tmp_path):
    world = World(tmp_path)
    second = SecondInstall(world)
    try:
        ids: dict[str, list[int]] = {"first": [], "second": []}
        # Twelve markets: each install's twelve alerts may all run at once.
        markets = default_markets()[:12]
        for n, market in enumerate(markets):
            bar = f"2026-10-01T{n:02d}:00:00Z"
            qty = max(market.min_qty, market.qty_step * math.ceil(Decimal(6) / market.price / market.qty_step))
            for install, url, strategy in (("first", world.web.url, "fa"), ("second", second.web.url, "demo")):
                body = alert_body(
                    strategy_id=strategy,
                    ticker=f"{market.base}USDT.P",
                    price=str(market.price),
                    volume=str(qty),
                    bar_time=bar,
                )
                status, answer, _ = http_post(url + "/tv-webhook", json.dumps(body).encode())
                assert status == 202, answer
                ids[install].append(answer["signal_id"])
        sent = time.monotonic()
        done: dict[str, float] = {}

        def all_executed() -> bool:
            if "first" not in done and (
                Signal.objects.filter(pk__in=ids["first"], status=Signal.Status.EXECUTED).count() == 12
            ):
                done["first"] = time.monotonic() - sent
            if "second" not in done and second.executed(ids["second"]) == 12:
                done["second"] = time.monotonic() - sent
            return len(done) == 2

        wait_for(all_executed, timeout=30, interval=0.02, message="both installs to execute their own alerts")
        ROWS.append(
            {
                "scenario": "two installs on one Redis, 12 alerts each",
                "all executed within s (after the last alert)": f"{done['first']:.2f} / {done['second']:.2f}",
            }
        )
        # 2 s on a quiet machine; the bar here leaves room for a busy one, and still catches
        # one install's worker taking the other's wake-ups (a re-queue costs 10 s or more).
        assert max(done.values()) < 5.0, done
        # Neither worker ever saw the other's wake-ups.
        assert "event=signal_executed strategy=demo" not in world.worker.log()
        assert "strategy=fa" not in second.worker.log()
    finally:
        second.close()
        world.close()


def _post_burst(world: World, n: int, offset: int) -> list[int]:
    """`n` alerts as fast as one client sends them, over 2 strategies × 10 markets."""
    markets = default_markets()[:10]
    ids = []
    for i in range(n):
        market = markets[i % len(markets)]
        strategy = ("fa", "fb")[(i // len(markets)) % 2]
        seq = offset + i // (2 * len(markets))
        qty = max(market.min_qty, market.qty_step * math.ceil(Decimal(6) / market.price / market.qty_step))
        body = alert_body(
            strategy_id=strategy,
            ticker=f"{market.base}USDT.P",
            action="buy" if seq % 2 == 0 else "sell",
            price=str(market.price),
            volume=str(qty),
            bar_time=(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=seq)).isoformat().replace("+00:00", "Z"),
        )
        status, answer, _ = http_post(world.web.url + "/tv-webhook", json.dumps(body).encode())
        assert status == 202, answer
        ids.append(answer["signal_id"])
    return ids


def _all_final(ids: list[int], timeout: float) -> None:
    wait_for(
        lambda: not Signal.objects.filter(pk__in=ids).exclude(status__in=Signal.TERMINAL_STATUSES).exists(),
        timeout=timeout,
        interval=0.1,
        message="the backlog to drain",
    )


def test_a_backlog_after_a_worker_restart_drains_as_fast_as_the_same_alerts_without_a_fault(transactional_db, tmp_path):
    n = int(os.environ.get("CHAOS_BACKLOG", "400"))
    world = World(tmp_path, worker_concurrency=32)
    try:
        # Without a fault: from the first alert sent (the worker works while they arrive).
        started = time.monotonic()
        _all_final(_post_burst(world, n, offset=0), timeout=600)
        normal = time.monotonic() - started
        # The same number of alerts waiting while no worker runs, then one starts.
        world.worker.kill()
        ids = _post_burst(world, n, offset=1000)
        world.worker_log_before += world.worker.log()
        world.worker.log_path.write_bytes(b"")
        started = time.monotonic()
        world.worker.start()  # returns once the worker is ready (markets loaded, books reconciled)
        ready = time.monotonic()
        _all_final(ids, timeout=600)
        backlog = time.monotonic() - ready
        ROWS.append(
            {
                "scenario": f"{n}-alert backlog after a worker restart",
                "drained in s from the worker ready (from its start)": f"{backlog:.1f} ({backlog + ready - started:.1f})",
                "the same alerts without a fault, s": f"{normal:.1f}",
            }
        )
        assert backlog <= normal * 1.1, (backlog, normal)
    finally:
        world.close()
