"""Webhook intake benchmark, production-like: gunicorn (deploy/gunicorn.conf.py, sync
workers) + PostgreSQL + Redis, on a private port, with a database and a redis-server of its
own. Prints sequential latency, a 200-alert burst and sustained throughput, and checks that
every accepted alert was persisted and queued.

    make bench-intake                      # or: .venv/bin/python -m bench.intake
    make bench-intake ARGS="--runs 5"      # more runs (best and spread are printed)
    .venv/bin/python -m bench.intake --profile 2000   # where the time goes, in-process

Settings: BENCH_DATABASE_URL (default: TEST_DATABASE_URL's server, database
`bench_intake_<name>`, see bench.common.bench_database_url; it is dropped and recreated, and
no other database is touched). The load generator is asyncio on the standard library (uvloop
when installed) and shares the cores with the server, so figures are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import bench_database_url, recreate_bench_database  # noqa: E402
from tests.processes import GunicornProcess, PrivateRedis  # noqa: E402

TARGETS = {"seq_p50_ms": 3.0, "seq_p99_ms": 10.0, "burst200_last_ms": 500.0, "sustained_rps": 400.0}


# --- the client ------------------------------------------------------------------------------


class Alerts:
    """Distinct alerts (a new bar each), so none is a duplicate of another."""

    def __init__(self, passphrase: str, port: int):
        self.passphrase = passphrase
        self.port = port
        self.n = 0
        self.base = 1_700_000_000

    def next_request(self) -> bytes:
        self.n += 1
        body = json.dumps(
            {
                "passphrase": self.passphrase,
                "action": "buy",
                "ticker": "BTCUSDT.P",
                "exchange": "BYBIT",
                "price": 65000.5,
                "volume": 0.01,
                "strategy_id": "bench",
                "timeframe": "1",
                "bar_time": self.base + self.n * 60,
            }
        ).encode()
        head = (
            f"POST /tv-webhook HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        return head + body


async def one_request(port: int, request: bytes) -> tuple[int, float, float]:
    """One TCP connection per request, as separate TradingView deliveries are. Returns
    (status, started, finished) in perf_counter seconds."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    try:
        # The answer is complete when Content-Length bytes of body have arrived, as for any
        # HTTP client; gunicorn's sync worker closes the socket only after the post-answer
        # enqueue, which TradingView does not wait for.
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        status = int(head[9:12])
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        status = 0
    finished = time.perf_counter()
    writer.close()
    return status, started, finished


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def sequential(port: int, alerts: Alerts, n: int) -> dict:
    latencies, bad = [], 0
    for _ in range(n):
        status, started, finished = await one_request(port, alerts.next_request())
        bad += not 200 <= status < 300
        latencies.append((finished - started) * 1000)
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99), "non_2xx": bad}


async def burst(port: int, alerts: Alerts, n: int) -> dict:
    requests = [alerts.next_request() for _ in range(n)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one_request(port, r) for r in requests))
    last = max(finished for _, _, finished in results)
    return {
        "last_ms": (last - t0) * 1000,
        "p99_ms": percentile([(f - s) * 1000 for _, s, f in results], 0.99),
        "non_2xx": sum(not 200 <= s < 300 for s, _, _ in results),
    }


async def sustained(port: int, alerts: Alerts, seconds: float, concurrency: int) -> dict:
    deadline = time.perf_counter() + seconds
    ok = bad = 0

    async def loop():
        nonlocal ok, bad
        while time.perf_counter() < deadline:
            status, _, _ = await one_request(port, alerts.next_request())
            if 200 <= status < 300:
                ok += 1
            else:
                bad += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"rps": ok / elapsed, "accepted": ok, "non_2xx": bad, "seconds": elapsed}


# --- the run ---------------------------------------------------------------------------------


def run(args) -> int:
    db_url = bench_database_url("intake")
    work = Path(tempfile.mkdtemp(prefix="tvtrader-bench-"))
    passphrase = secrets.token_urlsafe(18)
    redis = PrivateRedis(work / "redis")
    redis.start()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis.url,
        "CELERY_BROKER_URL": redis.url,
        "TVTRADER_VAR_DIR": str(work / "var"),
        "WEBHOOK_PASSPHRASE": passphrase,
        "LOG_LEVEL": "INFO",
        "DJANGO_SETTINGS_MODULE": "tvtrader.settings",
    }
    if args.workers:
        env["GUNICORN_WORKERS"] = str(args.workers)
    server = None
    try:
        print(f"==> database {db_url.split('@')[-1]} (recreated), redis {redis.url}", flush=True)
        recreate_bench_database(db_url)
        py = sys.executable
        subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
        subprocess.run(
            [
                py,
                "manage.py",
                "shell",
                "-c",
                "from strategies.models import Strategy; Strategy.objects.create(strategy_id='bench')",
            ],
            cwd=BASE_DIR,
            env=env,
            check=True,
        )
        server = GunicornProcess(env, work / "gunicorn.log", workers=args.workers or None)
        server.start()
        port = server.port
        alerts = Alerts(passphrase, port)
        loop_runner = _runner()

        loop_runner(sequential(port, alerts, 50))  # warm-up: connections, imports, caches
        seq, bursts, sus, floors = [], [], [], []
        for i in range(args.runs):
            floors.append(commit_floor(db_url))
            seq.append(loop_runner(sequential(port, alerts, args.seq)))
            time.sleep(0.3)
            bursts.append(loop_runner(burst(port, alerts, 200)))
            time.sleep(0.5)
            cpu_before = server_cpu_seconds(server.proc.pid)
            sus.append(loop_runner(sustained(port, alerts, args.seconds, args.concurrency)))
            sus[-1]["server_cpu_ms"] = (
                (server_cpu_seconds(server.proc.pid) - cpu_before) * 1000 / max(1, sus[-1]["accepted"])
            )
            time.sleep(0.5)
            print(
                f"run {i + 1}: commit floor p50 {floors[-1]:.2f} ms | seq p50 {seq[-1]['p50_ms']:.2f} ms p99 {seq[-1]['p99_ms']:.2f} ms | "
                f"burst200 last {bursts[-1]['last_ms']:.0f} ms (non-2xx {bursts[-1]['non_2xx']}) | "
                f"sustained {sus[-1]['rps']:.0f} alerts/s (non-2xx {sus[-1]['non_2xx']}, "
                f"server CPU {sus[-1]['server_cpu_ms']:.2f} ms/alert)",
                flush=True,
            )
        persisted, queued = verify(env, redis.url, alerts.n)
        report = summarise(seq, bursts, sus)
        report["commit_floor_p50_ms"] = min(floors)
        report["commit_floor_spread"] = f"{min(floors):.2f}–{max(floors):.2f}"
        report.update(sent=alerts.n, persisted=persisted, queued=queued)
        print_report(report)
        return 0 if report["all_2xx"] and persisted == queued == alerts.n else 1
    finally:
        if server:
            server.stop()
        redis.stop()


def _runner():
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def server_cpu_seconds(master_pid: int) -> float:
    """User+system CPU of the gunicorn master and its workers, from /proc (Linux). Less
    sensitive to other tenants of the machine than wall-clock figures."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == master_pid or int(fields[1]) == master_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def commit_floor(db_url: str, n: int = 300) -> float:
    """p50 of one durable INSERT round trip from Python to this PostgreSQL (the WAL fsync of
    the disk included): no view can answer faster than this and still commit first."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial primary key, v text)")
        times = []
        for _ in range(n):
            t = time.perf_counter()
            conn.execute("INSERT INTO bench_floor (v) VALUES ('x') RETURNING id").fetchone()
            times.append((time.perf_counter() - t) * 1000)
        conn.execute("DROP TABLE bench_floor")
    return percentile(times, 0.5)


def verify(env: dict, redis_url: str, sent: int) -> tuple[int, int]:
    """Every alert answered 2xx must be a committed row and a message in the broker."""
    import redis as redis_py

    def django(code: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=BASE_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip().splitlines()[-1]

    # The broker's keys live under the install's namespace (settings.REDIS_NAMESPACE).
    queue = django("from django.conf import settings; print(settings.REDIS_NAMESPACE)") + "orders"
    client = redis_py.Redis.from_url(redis_url)
    deadline = time.monotonic() + 10
    while client.llen(queue) < sent and time.monotonic() < deadline:
        time.sleep(0.1)  # the wake-up is published after the answer is written
    queued = client.llen(queue)
    accepted = django("from signals.models import Signal; print(Signal.objects.filter(status='accepted').count())")
    return int(accepted), queued


def summarise(seq, bursts, sus) -> dict:
    def spread(values):
        return f"{min(values):.2f}–{max(values):.2f}"

    return {
        "seq_p50_ms": min(r["p50_ms"] for r in seq),
        "seq_p50_spread": spread([r["p50_ms"] for r in seq]),
        "seq_p99_ms": min(r["p99_ms"] for r in seq),
        "seq_p99_spread": spread([r["p99_ms"] for r in seq]),
        "burst200_last_ms": min(r["last_ms"] for r in bursts),
        "burst200_spread": spread([r["last_ms"] for r in bursts]),
        "burst200_median_ms": statistics.median(r["last_ms"] for r in bursts),
        "sustained_rps": max(r["rps"] for r in sus),
        "sustained_spread": spread([r["rps"] for r in sus]),
        "server_cpu_ms_per_alert": min(r["server_cpu_ms"] for r in sus),
        "server_cpu_spread": spread([r["server_cpu_ms"] for r in sus]),
        "all_2xx": not any(r["non_2xx"] for r in seq + bursts + sus),
    }


def print_report(r: dict) -> None:
    def mark(key, ok):
        return "ok " if ok else "MISS"

    print("\n== webhook intake (best of runs; spread in brackets) ==")
    print(
        f"{mark('p50', r['seq_p50_ms'] <= TARGETS['seq_p50_ms'])} sequential p50   {r['seq_p50_ms']:8.2f} ms  [{r['seq_p50_spread']}]  target <= 3"
    )
    print(
        f"{mark('p99', r['seq_p99_ms'] <= TARGETS['seq_p99_ms'])} sequential p99   {r['seq_p99_ms']:8.2f} ms  [{r['seq_p99_spread']}]  target <= 10"
    )
    print(
        f"{mark('b', r['burst200_last_ms'] <= TARGETS['burst200_last_ms'])} burst 200 last  {r['burst200_last_ms']:8.0f} ms  [{r['burst200_spread']}] median {r['burst200_median_ms']:.0f}  target <= 500"
    )
    print(
        f"{mark('s', r['sustained_rps'] >= TARGETS['sustained_rps'])} sustained        {r['sustained_rps']:8.0f} /s  [{r['sustained_spread']}]  target >= 400"
    )
    print(
        f"     server CPU       {r['server_cpu_ms_per_alert']:8.2f} ms/alert  [{r['server_cpu_spread']}]  "
        "(gunicorn workers, sustained phase: the figure other tenants disturb least)"
    )
    print(
        f"     commit floor     {r['commit_floor_p50_ms']:8.2f} ms  [{r['commit_floor_spread']}]  "
        "(one durable INSERT from Python: the disk's share of every figure above)"
    )
    print(f"{mark('2', r['all_2xx'])} every answer 2xx: {r['all_2xx']}")
    print(
        f"{mark('v', r['persisted'] == r['queued'] == r['sent'])} sent {r['sent']}, persisted {r['persisted']}, queued {r['queued']}"
    )
    print("json " + json.dumps(r))


# --- where the time goes ---------------------------------------------------------------------


def profile(n: int, sort: str, args_filter: str = "") -> int:
    """Call the WSGI application in-process (no HTTP, no client) n times under cProfile."""
    import cProfile
    import io
    import pstats

    db_url = bench_database_url("intake")
    work = Path(tempfile.mkdtemp(prefix="tvtrader-prof-"))
    redis = PrivateRedis(work / "redis")
    redis.start()
    os.environ.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis.url,
        CELERY_BROKER_URL=redis.url,
        TVTRADER_VAR_DIR=str(work / "var"),
        WEBHOOK_PASSPHRASE="profile-passphrase",
        DJANGO_SETTINGS_MODULE="tvtrader.settings",
    )
    try:
        recreate_bench_database(db_url)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from strategies.models import Strategy
        from tvtrader.wsgi import application

        Strategy.objects.create(strategy_id="bench")
        alerts = Alerts("profile-passphrase", 80)

        def call():
            raw = alerts.next_request()
            body = raw.split(b"\r\n\r\n", 1)[1]
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/tv-webhook",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_HOST": "127.0.0.1",
                "CONTENT_TYPE": "text/plain; charset=utf-8",
                "CONTENT_LENGTH": str(len(body)),
                "wsgi.input": __import__("io").BytesIO(body),
                "wsgi.url_scheme": "http",
            }
            result = application(environ, lambda status, headers: None)
            b"".join(result)
            result.close()

        import logging

        # Log lines go to a file, as they go to journald in production, not to this terminal.
        handler = logging.FileHandler(work / "app.log")
        logging.getLogger().handlers = [handler]
        for _ in range(200):
            call()
        times = []
        profiler = cProfile.Profile()
        for _ in range(n):
            t = time.perf_counter()
            profiler.enable()
            call()
            profiler.disable()
            times.append((time.perf_counter() - t) * 1000)
        print(f"in-process view (with profiler on): p50 {percentile(times, 0.5):.3f} ms over {n} calls")
        plain = []
        cpu0 = time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            call()
            plain.append((time.perf_counter() - t) * 1000)
        cpu_ms = (time.process_time() - cpu0) / n * 1000
        print(
            f"in-process view (profiler off):     p50 {percentile(plain, 0.5):.3f} ms wall, {cpu_ms:.3f} ms CPU per call"
        )
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(args_filter or None, 45)
        print(out.getvalue())
    finally:
        redis.stop()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seq", type=int, default=1000, help="sequential alerts per run")
    parser.add_argument("--seconds", type=float, default=5.0, help="sustained phase length per run")
    parser.add_argument("--concurrency", type=int, default=32, help="sustained phase: concurrent connections")
    parser.add_argument("--workers", type=int, default=0, help="gunicorn workers (default: deploy/gunicorn.conf.py)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N in-process calls instead")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--filter", default="", help="regex restricting the profile listing")
    args = parser.parse_args(argv)
    if args.profile:
        return profile(args.profile, args.sort, args.filter)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
