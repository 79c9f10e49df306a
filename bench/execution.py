"""Whole-chain execution benchmark: webhook → database → broker → worker → ccxt → emulator.

    make bench-execution            (or: .venv/bin/python bench/execution.py)

Production-like on this machine: gunicorn (deploy/gunicorn.conf.py, sync workers) on
PostgreSQL, Redis as the broker, one Celery worker with the same pool as `make run`
(threads), real ccxt talking HTTP to the exchange emulator running as its own process.
"Order at the exchange" is the moment the emulator read the create request's first line.

Scenarios (targets from issue 3):
  1. single alerts, emulator answering at once: alert → order at exchange p50 ≤ 10 ms, p99 ≤ 30 ms
  2. 21 simultaneous alerts on 21 symbols, each create answered after 800 ms: every order
     reaches the exchange within 150 ms of its alert
  3. 200 simultaneous alerts, rate limit not binding: every order within 1 s of the last
     alert, none lost or doubled
  4. the same 200 with the account limited to 10 orders/s: never more than 10 in any
     second at the exchange, all placed in the time that allows (≈ 19 s) and no longer
  5. worker RSS at rest and after the 200-burst
  6. protective orders (issue 14): single alerts on a strategy with a 2 % stop-loss and 4 %
     take-profit: alert → entry at the exchange, and entry fill known → stop-loss at the
     exchange (p50/p99)   [target: the stop live within 50 ms of the fill being known]
Uses its own PostgreSQL database (tvtrader_bench_exec, or $BENCH_DATABASE) and Redis database 10
(or $BENCH_REDIS_URL).
`--exchange binanceusdm|bitget|okx` runs the same scenarios against that venue's emulated API
(default bybit), e.g. `make bench-execution ARGS="--exchange okx --scenarios 1"`; scenario 6
needs bybit or binanceusdm (where protective orders are wired).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402
    CpuSampler,
    burst_post,
    cpu_delta,
    free_port,
    percentile,
    post_sequential,
    prepare_environment,
    rss_mb,
    start_process,
    stop_processes,
    wait_http,
)

KEY, SECRET, PASSPHRASE = "bench-key", "bench-secret", "bench-pass"


def emu_call(url: str, path: str, payload=None, method=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(
        url + path,
        data=data,
        method=method or ("POST" if data else "GET"),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def creates(emu_url: str) -> dict[str, float]:
    rows = emu_call(emu_url, "/__emulator/requests?operation=create_order")
    first: dict[str, float] = {}
    for row in rows:
        cid = row.get("client_order_id")
        if cid and cid not in first:
            first[cid] = row["recv_wall"]
    return first


def stage_breakdown(answers: list[dict], seen: dict[str, float]) -> dict[str, float]:
    """p50 of each stage between the alert leaving the client and the create request
    reaching the emulator, from the signal's and order's own timestamps (one clock: all on
    this machine)."""
    from execution.models import Order
    from signals.models import Signal

    sent = {a["signal_id"]: a["sent_wall"] for a in answers}
    rows = Signal.objects.filter(pk__in=sent).values_list("pk", "received_at", "committed_at", "started_at")
    submitted = dict(Order.objects.filter(signal_id__in=sent, leg=1).values_list("signal_id", "submitted_at"))
    stages: dict[str, list[float]] = {}

    def add(name: str, start: float, end: float) -> None:
        stages.setdefault(name, []).append((end - start) * 1000)

    from execution.engine.plan import client_order_id_for

    for pk, received, committed, started in rows:
        at_exchange = seen.get(client_order_id_for(signal_id=pk, leg=1))
        if not (received and committed and started and submitted.get(pk) and at_exchange):
            continue
        add("client send → view received", sent[pk], received.timestamp())
        add("received → committed", received.timestamp(), committed.timestamp())
        add("committed → worker claimed", committed.timestamp(), started.timestamp())
        add("claimed → order claimed to send", started.timestamp(), submitted[pk].timestamp())
        add("order claimed → emulator read it", submitted[pk].timestamp(), at_exchange)
    return {name: percentile(values, 50) for name, values in stages.items()}


def burst_timeline(answers: list[dict], seen: dict[str, float]) -> dict[str, tuple[float, float]]:
    """For a burst: when half of the signals, and all of them, had reached each stage,
    in ms after the first alert left the client. Shows which stage the burst queues at."""
    from execution.engine.plan import client_order_id_for
    from execution.models import Order
    from signals.models import Signal

    sent = {a["signal_id"]: a["sent_wall"] for a in answers if a.get("signal_id")}
    t0 = min(sent.values())
    rows = Signal.objects.filter(pk__in=sent).values_list("pk", "received_at", "committed_at", "started_at")
    submitted = dict(Order.objects.filter(signal_id__in=sent, leg=1).values_list("signal_id", "submitted_at"))
    marks: dict[str, list[float]] = {name: [] for name in ("alert sent", "received", "committed", "worker claimed")}
    marks.update({"order claimed to send": [], "emulator read it": []})
    for pk, received, committed, started in rows:
        marks["alert sent"].append(sent[pk])
        for name, at in (("received", received), ("committed", committed), ("worker claimed", started)):
            if at:
                marks[name].append(at.timestamp())
        if submitted.get(pk):
            marks["order claimed to send"].append(submitted[pk].timestamp())
        if (at_exchange := seen.get(client_order_id_for(signal_id=pk, leg=1))) is not None:
            marks["emulator read it"].append(at_exchange)
    return {
        name: (percentile([(t - t0) * 1000 for t in values], 50), (max(values) - t0) * 1000)
        for name, values in marks.items()
        if values
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=100, help="number of single alerts")
    parser.add_argument("--scenarios", default="12346", help="which scenarios to run, e.g. 13 (default: all)")
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WORKER_PROCESSES", "1")),
        help="worker processes (each with --concurrency threads)",
    )
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between single alerts")
    parser.add_argument("--concurrency", default=os.environ.get("WORKER_CONCURRENCY", "64"))
    parser.add_argument(
        "--exchange", choices=("bybit", "binanceusdm", "bitget", "okx"), default="bybit", help="venue to emulate"
    )
    args = parser.parse_args()

    env = prepare_environment(os.environ.get("BENCH_DATABASE", "tvtrader_bench_exec"), redis_db=10)
    import django

    django.setup()
    from decimal import Decimal

    from django.core.management import call_command

    from emulator.markets import default_markets
    from execution.engine.plan import client_order_id_for
    from execution.models import ExchangeAccount, Order
    from execution.ratelimit import guard_ms
    from signals.models import Signal
    from strategies.models import Strategy

    procs: list[subprocess.Popen] = []
    try:
        emu_port, web_port = free_port(), free_port()
        emu_url = f"http://127.0.0.1:{emu_port}"
        procs.append(
            start_process(
                "emulator",
                [
                    sys.executable,
                    "-m",
                    "emulator",
                    "--port",
                    str(emu_port),
                    "--key",
                    KEY,
                    "--secret",
                    SECRET,
                    "--passphrase",
                    PASSPHRASE,
                    "--balance",
                    "1000000000",
                ],
                env,
            )
        )
        wait_http(emu_url + "/__emulator/health")
        call_command("migrate", verbosity=0)
        account = ExchangeAccount(
            label="bench",
            exchange=args.exchange,
            mode="testnet",
            market_type="linear",
            base_url=emu_url,
            max_orders_per_second=Decimal("1000"),
        )
        account.set_credentials(
            api_key=KEY, api_secret=SECRET, api_password=PASSPHRASE if args.exchange in ("bitget", "okx") else None
        )
        account.save()
        markets = default_markets()[:25]
        strategies = [
            Strategy.objects.create(
                strategy_id=f"bench{i}", account=account, sizing_mode="fixed_quote", size_value=Decimal("100")
            )
            for i in range(8)
        ]
        web = f"http://127.0.0.1:{web_port}/tv-webhook"
        procs.append(
            start_process(
                "gunicorn",
                [
                    str(Path(sys.executable).parent / "gunicorn"),
                    "tvtrader.wsgi",
                    "-c",
                    str(BASE_DIR / "deploy/gunicorn.conf.py"),
                    "--bind",
                    f"127.0.0.1:{web_port}",
                ],
                env,
            )
        )
        env["WORKER_PREWARM"] = str(args.concurrency)
        workers = []
        for n in range(args.workers):
            workers.append(
                start_process(
                    f"worker{n}",
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "tvtrader",
                        "worker",
                        "-P",
                        "threads",
                        "-c",
                        args.concurrency,
                        "-Q",
                        "orders,default",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-l",
                        "warning",
                        "-n",
                        f"bench{n}@%h",
                    ],
                    env,
                )
            )
        procs.extend(workers)
        groups = {"gunicorn": [procs[1].pid], "worker": [w.pid for w in workers], "emulator": [procs[0].pid]}
        wait_http(f"http://127.0.0.1:{web_port}/health", accept=(200, 503))
        time.sleep(3)  # worker start-up: markets warmed before the first alert
        passphrase = env["WEBHOOK_PASSPHRASE"]
        bar = iter(range(1_000_000))

        def alert(strategy: str, base: str, price) -> bytes:
            return json.dumps(
                {
                    "passphrase": passphrase,
                    "action": "buy",
                    "ticker": f"{base}USDT.P",
                    "exchange": {"binanceusdm": "BINANCE"}.get(args.exchange, args.exchange.upper()),
                    "price": str(price),
                    "volume": 1,
                    "strategy_id": strategy,
                    "bar_time": "2026-01-01T00:00:00Z",
                    "order_id": f"b{next(bar)}",
                }
            ).encode()

        def wait_done(ids: list[int], timeout: float = 120) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not Signal.objects.filter(pk__in=ids, status__in=Signal.PENDING_STATUSES).exists():
                    return
                time.sleep(0.2)
            raise SystemExit("signals did not finish in time")

        results: dict[str, object] = {"worker_rss_mb_at_rest": sum(rss_mb(w.pid) for w in workers)}
        print(f"worker RSS at rest: {results['worker_rss_mb_at_rest']:.0f} MB (threads pool, -c {args.concurrency})")

        # 1. single alerts
        if "1" in args.scenarios:
            bodies = [
                alert(strategies[i % 8].strategy_id, markets[i % 25].base, markets[i % 25].price)
                for i in range(args.single)
            ]
            answers = post_sequential(web, bodies, pause=args.pause)
            ids = [a["signal_id"] for a in answers]
            wait_done(ids)
            executed = Signal.objects.filter(pk__in=ids, status=Signal.Status.EXECUTED).count()
            results["single_executed"] = executed
            print(f"   {args.exchange}: {executed}/{len(ids)} alerts executed")
            seen = creates(emu_url)
            lat = [
                (seen[client_order_id_for(signal_id=a["signal_id"], leg=1)] - a["sent_wall"]) * 1000 for a in answers
            ]
            results["single_p50_ms"], results["single_p99_ms"] = percentile(lat, 50), percentile(lat, 99)
            slowest = sorted(range(len(lat)), key=lat.__getitem__)[-5:]
            print("   slowest: " + ", ".join(f"#{i + 1} {lat[i]:.0f} ms" for i in reversed(slowest)))
            print(
                f"1. single alerts (n={len(lat)}): alert → order at exchange p50 {results['single_p50_ms']:.1f} ms, "
                f"p99 {results['single_p99_ms']:.1f} ms   [target ≤ 10 / ≤ 30]"
            )
            print("   where the time goes (p50 of each stage, from the latency chain the app records):")
            for name, ms in stage_breakdown(answers, seen).items():
                print(f"     {name:<34} {ms:6.2f} ms")

        # 2. 21 alerts on 21 symbols, slow exchange
        if "2" in args.scenarios:
            emu_call(
                emu_url,
                "/__emulator/faults",
                {"action": "latency_ms", "endpoint": "create_order", "ms": 800, "count": None},
            )
            bodies = [alert("bench0", m.base, m.price) for m in markets[:21]]
            answers = burst_post(web, bodies)
            ids = [a["signal_id"] for a in answers]
            wait_done(ids)
            emu_call(emu_url, "/__emulator/faults", method="DELETE")
            seen = creates(emu_url)
            lat = [
                (seen[client_order_id_for(signal_id=a["signal_id"], leg=1)] - a["sent_wall"]) * 1000 for a in answers
            ]
            results["burst21_worst_ms"] = max(lat)
            print(
                f"2. 21 simultaneous alerts, exchange answering in 800 ms: worst alert → order at exchange "
                f"{max(lat):.0f} ms, median {statistics.median(lat):.0f} ms   [target ≤ 150]"
            )

        # 3. 200 alerts, limit not binding
        if "3" in args.scenarios:
            bodies = [alert(s.strategy_id, m.base, m.price) for s in strategies for m in markets]
            sampler = CpuSampler(groups)
            answers = burst_post(web, bodies)
            ok = [a for a in answers if a.get("status") == "accepted"]
            ids = [a["signal_id"] for a in ok]
            wait_done(ids)
            sampler.stop()
            seen = creates(emu_url)
            cids = [client_order_id_for(signal_id=i, leg=1) for i in ids]
            last_alert = max(a["sent_wall"] for a in answers)
            last_order = max(seen[c] for c in cids if c in seen)
            ledger = emu_call(emu_url, "/__emulator/orders")
            booked = [o for o in ledger if o["client_order_id"] in set(cids)]
            executed = Signal.objects.filter(pk__in=ids, status="executed").count()
            results.update(
                burst200_accepted=len(ok),
                burst200_last_order_after_last_alert_ms=(last_order - last_alert) * 1000,
                burst200_booked=len(booked),
                burst200_distinct=len({o["client_order_id"] for o in booked}),
            )
            print(
                f"3. 200 simultaneous alerts, limit not binding: {len(ok)}/200 accepted, {executed} executed, "
                f"{len(booked)} orders booked ({results['burst200_distinct']} distinct client ids); last order "
                f"{results['burst200_last_order_after_last_alert_ms']:.0f} ms after the last alert   [target ≤ 1000, "
                "none lost or doubled]"
            )
            results["worker_rss_mb_after_burst"] = sum(rss_mb(w.pid) for w in workers)
            for label, until in (("until the last order reached the exchange", last_order), ("until all finished", 0)):
                cpu = sampler.used_until(until) if until else cpu_delta(sampler.samples[0][1], sampler.samples[-1][1])
                results[f"burst200_cpu_s {label}"] = {k: round(v, 2) for k, v in cpu.items()}
                print(
                    f"   CPU seconds {label}: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                    + f"; total {sum(cpu.values()):.2f} on {os.cpu_count()} cores"
                )
            print("   timeline, ms after the first alert left the client (half of them / all of them):")
            for name, (half, last) in burst_timeline(answers, seen).items():
                print(f"     {name:<24} {half:7.0f} / {last:7.0f}")

        # 4. 200 alerts, account limited to 10 orders/s
        if "4" in args.scenarios:
            ExchangeAccount.objects.filter(pk=account.pk).update(max_orders_per_second=Decimal("10"))
            emu_call(emu_url, "/__emulator/requests", method="DELETE")
            bodies = [alert(s.strategy_id, m.base, m.price) for s in strategies for m in markets]
            answers = burst_post(web, bodies)
            ids = [a["signal_id"] for a in answers if a.get("status") == "accepted"]
            wait_done(ids, timeout=180)
            seen = creates(emu_url)
            times = sorted(seen.values())
            worst = max(sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times))
            # How late a request reaches the venue after its rate slot: what the guard covers.
            slot_to_venue = [
                (seen[cid] - at.timestamp()) * 1000
                for cid, at in Order.objects.filter(signal_id__in=ids, leg=1).values_list(
                    "client_order_id", "submitted_at"
                )
                if cid in seen and at
            ]
            span = times[-1] - times[0]
            orders = Order.objects.filter(signal_id__in=ids, status="filled").count()
            results.update(limited_max_per_second=worst, limited_span_s=span, limited_filled=orders)
            results["limited_slot_to_venue_ms"] = {
                "p50": round(percentile(slot_to_venue, 50), 1),
                "p99": round(percentile(slot_to_venue, 99), 1),
                "max": round(max(slot_to_venue), 1),
            }
            print(
                f"4. 200 alerts at 10 orders/s: {orders} filled; at most {worst} creates in any 1 s window at the "
                f"exchange; first → last create {span:.1f} s   [target ≤ 10/s, ≈ 19 s]"
            )
            print(
                "   rate slot taken → request at the exchange: p50 {p50} ms, p99 {p99} ms, max {max} ms "
                "(what the {guard} ms guard covers)".format(guard=guard_ms(), **results["limited_slot_to_venue_ms"])
            )
        # 6. protective orders: entry filled → stop live at the exchange
        if "6" in args.scenarios and args.exchange in ("bybit", "binanceusdm"):
            ExchangeAccount.objects.filter(pk=account.pk).update(max_orders_per_second=Decimal("1000"))
            Strategy.objects.create(
                strategy_id="benchprot",
                account=account,
                sizing_mode="fixed_quote",
                size_value=Decimal("100"),
                stop_loss_percent=Decimal("2"),
                take_profit_percent=Decimal("4"),
            )
            count = min(args.single, 50)
            # One alert per market at a time: each entry opens a fresh position with its own stop.
            bodies = [alert("benchprot", markets[i % 25].base, markets[i % 25].price) for i in range(count)]
            answers = post_sequential(web, bodies, pause=max(args.pause, 0.2))
            ids = [a["signal_id"] for a in answers]
            wait_done(ids)
            deadline = time.monotonic() + 20
            stops = Order.objects.filter(signal_id__in=ids, protection="stop_loss")
            while time.monotonic() < deadline and stops.filter(status__in=["pending", "submitting"]).exists():
                time.sleep(0.2)
            seen = creates(emu_url)
            entry_at = {}
            fill_known = {}
            for signal_id, cid, first_fill in Order.objects.filter(signal_id__in=ids, leg=1).values_list(
                "signal_id", "client_order_id", "first_fill_at"
            ):
                entry_at[signal_id] = seen.get(cid)
                fill_known[signal_id] = first_fill.timestamp() if first_fill else None
            sent_lat = [
                (entry_at[a["signal_id"]] - a["sent_wall"]) * 1000 for a in answers if entry_at.get(a["signal_id"])
            ]
            stop_lat = []
            live = 0
            for signal_id, cid, status in stops.values_list("signal_id", "client_order_id", "status"):
                live += status == "open"
                if cid in seen and fill_known.get(signal_id):
                    stop_lat.append((seen[cid] - fill_known[signal_id]) * 1000)
            results.update(
                protect_alert_to_entry_p50_ms=percentile(sent_lat, 50),
                protect_alert_to_entry_p99_ms=percentile(sent_lat, 99),
                protect_fill_to_stop_p50_ms=percentile(stop_lat, 50) if stop_lat else None,
                protect_fill_to_stop_p99_ms=percentile(stop_lat, 99) if stop_lat else None,
                protect_stops_live=live,
            )
            print(
                f"6. protective orders (n={len(ids)}, {live} stops live): alert → entry at exchange p50 "
                f"{results['protect_alert_to_entry_p50_ms']:.1f} ms, p99 {results['protect_alert_to_entry_p99_ms']:.1f} "
                f"ms; entry fill known → stop-loss at exchange p50 {results['protect_fill_to_stop_p50_ms']:.1f} ms, "
                f"p99 {results['protect_fill_to_stop_p99_ms']:.1f} ms   [target ≤ 50]"
            )
        elif "6" in args.scenarios:
            print(f"6. protective orders: not wired for {args.exchange} (bybit and binanceusdm only)")
        if "worker_rss_mb_after_burst" in results:
            print(
                f"5. worker RSS: {results['worker_rss_mb_at_rest']:.0f} MB at rest, "
                f"{results['worker_rss_mb_after_burst']:.0f} MB after the 200-burst"
            )
        print(json.dumps(results))
        return 0
    finally:
        stop_processes(procs)


if __name__ == "__main__":
    sys.exit(main())
