"""Order-stream benchmark: market order created over REST → its fill reported by the stream.

    make bench-streams            (or: .venv/bin/python bench/streams.py [--orders 300])

The exchange emulator runs as its own process (as in production, the venue is not in the
worker's interpreter). This process is the worker side: the REST gateway (sync ccxt, as the
engine uses it) places market orders one after the other, and the StreamManager (ccxt pro on
its own thread) reports them filled through the venue's private stream. For each venue:

* create → fill known: from just before ``create_order`` to the listener's ``on_order`` with
  status ``filled`` (p50 / p99 / max); the REST answer alone, for comparison;
* venue → fill known: from the moment the emulator read the create request (its request
  log; both processes share the monotonic clock) to that ``on_order``: the stream's own lag;
* CPU of the stream thread per order and per stream message (thread CPU clock), and of the
  whole process per order (REST create included).

No PostgreSQL; Redis database 12 (``BENCH_REDIS_URL``) only receives the gateway's markets
snapshot. Figures vary with the machine's load: run it on a quiet machine, three times.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import free_port, percentile, stop_processes, wait_http  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"


class FillWaiter:
    """Listener: the moment each client order id is first reported filled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.filled: dict[str, float] = {}
        self.events: dict[str, threading.Event] = {}
        self.updates = 0
        self.gaps = 0

    def expect(self, cid: str) -> threading.Event:
        with self.lock:
            event = self.events[cid] = threading.Event()
            return event

    def on_order(self, account_id: int, state) -> None:
        now = time.monotonic()
        self.updates += 1
        if state.status == "filled":
            with self.lock:
                if state.client_order_id not in self.filled:
                    self.filled[state.client_order_id] = now
                    event = self.events.get(state.client_order_id)
                    if event is not None:
                        event.set()

    def on_gap(self, account_id: int) -> None:
        self.gaps += 1


def loop_thread_cpu(manager) -> float:
    """CPU seconds used so far by the stream thread (read on that thread)."""

    async def read() -> float:
        return time.thread_time()

    return asyncio.run_coroutine_threadsafe(read(), manager._loop).result(5)


def emulator_pushes(url: str, venue: str) -> int:
    with urllib.request.urlopen(f"{url}/__emulator/streams?venue={venue}", timeout=5) as resp:
        return sum(c["pushes_sent"] for c in json.loads(resp.read()))


def venue_receipts(url: str, venue: str) -> dict[str, float]:
    query = f"operation=create_order&venue={venue}"
    with urllib.request.urlopen(f"{url}/__emulator/requests?{query}", timeout=10) as resp:
        return {r["client_order_id"]: r["recv_mono"] for r in json.loads(resp.read())}


def run_venue(exchange: str, venue: str, account_id: int, url: str, orders: int, manager, waiter, freeze=False) -> dict:
    from execution.exchanges.ccxt_gateway import CcxtGateway

    gateway = CcxtGateway(
        account_id=account_id,
        exchange=exchange,
        mode="testnet",
        market_type="linear",
        credentials={"apiKey": KEY, "secret": SECRET},
        base_url=url,
        label=f"bench-{exchange}",
    )
    gateway.warm()
    manager.watch(account_id, gateway, label=f"bench-{exchange}", version=1)
    deadline = time.monotonic() + 15
    while not manager.is_healthy(account_id):
        if time.monotonic() > deadline:
            raise SystemExit(f"{exchange}: stream not ready: {manager.health(account_id)}")
        time.sleep(0.05)

    def place(cid: str) -> float:
        start = time.monotonic()
        gateway.create_order(
            symbol="BTC/USDT:USDT",
            side="buy" if int(cid[-1], 36) % 2 else "sell",
            order_type="market",
            qty=Decimal("0.01"),
            price=None,
            reduce_only=False,
            client_order_id=cid,
        )
        return start

    for i in range(20):  # warm-up: connections, code paths
        cid = f"bw{exchange[:3]}{i}"
        event = waiter.expect(cid)
        place(cid)
        event.wait(5)
    if freeze:
        gc.freeze()

    pushes0, thread0, proc0 = emulator_pushes(url, venue), loop_thread_cpu(manager), time.process_time()
    to_fill, rest = [], []
    missing = 0
    for i in range(orders):
        cid = f"b{exchange[:3]}{i}x{os.getpid() % 1000}"
        event = waiter.expect(cid)
        start = place(cid)
        rest.append(time.monotonic() - start)
        if not event.wait(5):
            missing += 1
            continue
        to_fill.append(waiter.filled[cid] - start)
    thread_cpu = loop_thread_cpu(manager) - thread0
    proc_cpu = time.process_time() - proc0
    pushes = emulator_pushes(url, venue) - pushes0
    receipts = venue_receipts(url, venue)
    lag = [
        waiter.filled[cid] - at
        for cid, at in receipts.items()
        if cid in waiter.filled and cid.startswith("b" + exchange[:3])
    ]
    return {
        "venue": exchange,
        "orders": orders,
        "missing": missing,
        "fill_p50_ms": percentile(to_fill, 50) * 1000,
        "fill_p99_ms": percentile(to_fill, 99) * 1000,
        "fill_max_ms": max(to_fill) * 1000 if to_fill else float("nan"),
        "rest_p50_ms": statistics.median(rest) * 1000,
        "lag_p50_ms": percentile(lag, 50) * 1000,
        "lag_p99_ms": percentile(lag, 99) * 1000,
        "stream_cpu_per_order_ms": thread_cpu / orders * 1000,
        "stream_cpu_per_message_ms": thread_cpu / max(pushes, 1) * 1000,
        "messages_per_order": pushes / orders,
        "process_cpu_per_order_ms": proc_cpu / orders * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300, help="market orders per venue (default 300)")
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the warm-up: start-up objects (ccxt markets) leave the collector's reach",
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")
    # Only the gateway's markets snapshot lands there; never the caller's own database.
    os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    # As in the worker (tvtrader/celery.py): a thread whose reply has arrived is not kept
    # waiting 5 ms behind another thread's Python.
    sys.setswitchinterval(float(os.environ.get("WORKER_SWITCH_INTERVAL", "0.0005")))
    from execution.exchanges.streams import StreamManager

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port), "--key", KEY, "--secret", SECRET, "--balance", "1e12"],
        cwd=BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    manager = StreamManager()
    waiter = FillWaiter()
    manager.add_listener(waiter)
    results = []
    try:
        wait_http(f"{url}/__emulator/health")
        for account_id, (exchange, venue) in enumerate((("bybit", "bybit"), ("binanceusdm", "binance")), start=1):
            results.append(run_venue(exchange, venue, account_id, url, args.orders, manager, waiter, args.gc_freeze))
    finally:
        manager.stop()
        stop_processes([emulator])

    print(f"\nmarket order → fill known through the private stream ({args.orders} sequential orders per venue), ms")
    print(
        f"{'venue':<12} {'create→known p50':>16} {'p99':>7} {'max':>7} {'REST answer p50':>15} "
        f"{'venue→known p50':>15} {'p99':>7} {'missing':>8}"
    )
    for r in results:
        print(
            f"{r['venue']:<12} {r['fill_p50_ms']:16.2f} {r['fill_p99_ms']:7.2f} {r['fill_max_ms']:7.2f} "
            f"{r['rest_p50_ms']:15.2f} {r['lag_p50_ms']:15.2f} {r['lag_p99_ms']:7.2f} {r['missing']:8d}"
        )
    print("\nCPU in the worker process, ms")
    print(
        f"{'venue':<12} {'stream thread/order':>19} {'per stream message':>18} {'messages/order':>14} {'process/order':>13}"
    )
    for r in results:
        print(
            f"{r['venue']:<12} {r['stream_cpu_per_order_ms']:19.3f} {r['stream_cpu_per_message_ms']:18.3f} "
            f"{r['messages_per_order']:14.1f} {r['process_cpu_per_order_ms']:13.3f}"
        )
    print(f"gaps signalled: {waiter.gaps} (one per venue at connect is expected)")
    return 0 if all(r["missing"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
