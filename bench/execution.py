"""Whole-chain execution benchmark, every traffic shape side by side: webhook → database →
broker → worker → ccxt → exchange emulator.

    make bench-execution                                   (or: .venv/bin/python bench/execution.py)
    make bench-execution ARGS="--runs 3"                   three runs, each on a freshly started stack
    make bench-execution ARGS="--shapes one-market,burst200 --runs 2"
    make bench-execution ARGS="--code /tmp/base --label before"   the stack from another checkout

The stack is the default one, started as `make run` starts it (tvtrader.launcher: gunicorn
with deploy/gunicorn.conf.py, one Celery worker, Celery beat) on a database of its own
(`bench_execution…`, see bench.common.bench_database_url; dropped and recreated, nothing
else touched) and the caller's Redis database (REDIS_URL, or BENCH_REDIS_URL; flushed). The
exchange is the emulator (this checkout's, in its own process, real ccxt over HTTP and the
venue's private stream). "Order out" is the moment the emulator read the create request;
"fill known" the moment the app recorded the order's first fill.

Shapes (issue 13):
  cold-start    the stack starts; the first alert right after /health turns 200, against
                the alerts that follow it
  one-market    one strategy, one market, alerts back to back (each sent when the previous
                one is answered): entries, second entries and close + entry reversal pairs
  many-markets  one strategy, 21 markets in turn, back to back
  burst21       21 alerts at once on 21 markets, the exchange holding each create 0.8 s
  burst200      50 strategies × 4 markets at once: acknowledgements and orders out
  fan-out       one alert to a strategy subscribed on 10 accounts, alerts one at a time: the
                spread between the first and the last account's order out (issue 15: p50
                ≤ 15 ms), and alert → first / last account's order
  protect       entries of a strategy with a 2 % stop-loss and 4 % take-profit, one every
                0.2 s: alert → entry out, and entry fill known → stop-loss out (issue 14:
                within 50 ms; of the venues emulated here, only Bybit has them wired)
  rate-limit    the account limited to 10 orders/s, every core kept busy by spinning
                processes meanwhile: the most creates in any second at the exchange
Plus the whole stack's CPU per alert (gunicorn, worker, beat and the stack's PostgreSQL
backends; the shared Redis server cannot be told apart and is left out), its memory after
the bursts, and its PostgreSQL connections.

`--profile` runs py-spy on the worker and the web workers during each shape and prints where
the on-CPU samples went (raw stacks in var/bench/profile-*.txt).

The last line is a JSON object with every figure (also written to --json PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402
    LOG_DIR,
    burst_post,
    free_port,
    percentile,
    post_sequential,
    prepare_environment,
    start_process,
    stop_processes,
    wait_http,
)

KEY, SECRET, PASSPHRASE = "bench-key", "bench-secret", "bench-pass"
SHAPES = ("cold-start", "one-market", "many-markets", "burst21", "burst200", "fan-out", "protect", "rate-limit")
RATE_LIMIT = 10
FAN_OUT_ACCOUNTS, FAN_OUT_ALERTS = 10, 20
PROTECT_ALERTS = 40


# --- processes --------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else ():
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pids: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MB summed over `pids`; PSS counts pages shared between them once."""
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Stack:
    """The default stack (`make run`'s launcher) from `code_dir`, on `port`."""

    def __init__(self, code_dir: Path, port: int, env: dict[str, str], label: str):
        self.code_dir, self.port, self.env, self.label = code_dir, port, env, label
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        env = dict(self.env, HOST="127.0.0.1", PORT=str(self.port))
        log = open(LOG_DIR / f"stack-{self.label}.log", "ab")
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tvtrader.launcher"],
            cwd=self.code_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in tree(self.proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.proc = None

    def groups(self) -> dict[str, list[int]]:
        """The stack's processes by role (each with its children)."""
        out: dict[str, list[int]] = {"gunicorn": [], "worker": [], "beat": []}
        if self.proc is None:
            return out
        for pid in tree(self.proc.pid)[1:]:
            line = cmdline(pid)
            if "gunicorn" in line:
                out["gunicorn"].append(pid)
            elif " worker" in line:
                out["worker"].append(pid)
            elif " beat" in line:
                out["beat"].append(pid)
        return out

    def pids(self) -> list[int]:
        return [p for pids in self.groups().values() for p in pids]


class Postgres:
    """The stack's side of PostgreSQL: its backends (every connection to the bench database
    but the benchmark's own) and their CPU."""

    def __init__(self, database: str):
        from django.db import connection

        self.database = database
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.own = cursor.fetchone()[0]
        self.seen: dict[int, float] = {}

    def headroom(self) -> int:
        """Connections the server can still open (it is shared: a stack that needs more than
        this fails to start its threads)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity")
            return cursor.fetchone()[0]

    def backends(self) -> list[int]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", [self.database, self.own]
            )
            return [row[0] for row in cursor.fetchall()]


class CpuMeter:
    """CPU seconds the stack (gunicorn, worker, beat, its PostgreSQL backends) uses between
    start() and stop(). Backends that start meanwhile count in full."""

    def __init__(self, stack: Stack, pg: Postgres):
        self.stack, self.pg = stack, pg

    def _snapshot(self) -> dict[str, dict[int, float]]:
        snap = {name: {p: cpu_seconds(p) for p in pids} for name, pids in self.stack.groups().items()}
        snap["postgres"] = {p: cpu_seconds(p) for p in self.pg.backends()}
        return snap

    def start(self) -> None:
        self.before = self._snapshot()

    def stop(self) -> dict[str, float]:
        after = self._snapshot()
        return {
            name: round(sum(v - self.before.get(name, {}).get(p, 0.0) for p, v in after[name].items()), 3)
            for name in after
        }


class Profiler:
    """py-spy (requirements-dev.txt) sampling the worker and the web workers while a shape
    runs, only stacks holding the interpreter lock; `summary` says where the samples went."""

    OURS = ("execution/", "signals/", "strategies/", "tvtrader/")

    def __init__(self, stack: Stack, label: str):
        self.stack, self.label = stack, label
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, shape: str) -> None:
        spy = Path(sys.executable).parent / "py-spy"
        groups = self.stack.groups()
        for role, pids in (("worker", groups["worker"][:1]), ("gunicorn", groups["gunicorn"][:1])):
            if not pids:
                continue
            out = LOG_DIR / f"profile-{self.label}-{shape}-{role}.txt"
            # --gil: only stacks holding the interpreter lock, i.e. running Python (a thread
            # waiting on a socket or the database is not counted).
            args = [str(spy), "record", "--format", "raw", "--gil", "--nonblocking", "--rate", "250", "-o", str(out)]
            args += ["--pid", str(pids[0])] + (["--subprocesses"] if role == "gunicorn" else [])
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((role, proc, out))
        time.sleep(0.5)  # py-spy attaches

    def stop(self) -> dict[str, dict]:
        found = {}
        for role, proc, out in self.procs:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                found[role] = self.summary(out)
        self.procs = []
        return found

    @classmethod
    def summary(cls, path: Path, top: int = 12) -> dict:
        """Inclusive share of the samples per function of our code (where the time goes,
        top down) and self share per function of any code (what burns it)."""
        total, inclusive, own = 0, {}, {}
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            if frames:
                leaf = cls._short(frames[-1])
                own[leaf] = own.get(leaf, 0) + n
            for name in {cls._short(f) for f in frames if f.partition(" (")[2].startswith(cls.OURS)}:
                inclusive[name] = inclusive.get(name, 0) + n
        pct = lambda d: {k: round(100 * v / total, 1) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]}  # noqa: E731
        return {"samples": total, "inclusive_ours_pct": pct(inclusive), "self_pct": pct(own)}

    @staticmethod
    def _short(frame: str) -> str:
        """`fn (path/to/module.py:123)` → `module.py:fn`, the path kept from the package."""
        fn, _, where = frame.partition(" (")
        path = where.rsplit(":", 1)[0]
        parts = path.split("/")
        for anchor in ("site-packages", "python3.11"):
            if anchor in parts:
                parts = parts[parts.index(anchor) + 1 :]
                break
        else:
            parts = parts[-2:]
        return "/".join(parts[:3]) + ":" + fn


# --- the exchange -----------------------------------------------------------------------------


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
    """client order id → when the emulator read its first create request (time.time())."""
    rows = emu_call(emu_url, "/__emulator/requests?operation=create_order")
    first: dict[str, float] = {}
    for row in rows:
        cid = row.get("client_order_id")
        if cid and cid not in first:
            first[cid] = row["recv_wall"]
    return first


# --- the shapes ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, env: dict[str, str], emu_url: str, web_port: int, database: str):
        from decimal import Decimal

        from emulator.markets import default_markets
        from execution.models import ExchangeAccount
        from strategies.models import Strategy

        self.args, self.env, self.emu_url = args, env, emu_url
        self.web = f"http://127.0.0.1:{web_port}/tv-webhook"
        self.health = f"http://127.0.0.1:{web_port}/health"
        self.passphrase = env["WEBHOOK_PASSPHRASE"]
        self.markets = default_markets()[:25]
        self.bar = iter(range(10_000_000))
        self.database = database
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
        self.account = account

        def strategy(key: str) -> str:
            Strategy.objects.create(
                strategy_id=key, account=account, sizing_mode="fixed_quote", size_value=Decimal("100")
            )
            return key

        self.cold = strategy("cold")
        self.one = strategy("one")
        self.many = strategy("many")
        self.slow = strategy("slow")
        self.crowd = [strategy(f"c{i:02d}") for i in range(50)]
        self.limited = [strategy(f"r{i:02d}") for i in range(20)]

    # helpers

    def alert(self, strategy: str, market, action: str = "buy") -> bytes:
        return json.dumps(
            {
                "passphrase": self.passphrase,
                "action": action,
                "ticker": f"{market.base}USDT.P",
                "exchange": self.args.exchange.upper(),
                "price": str(market.price),
                "volume": 1,
                "strategy_id": strategy,
                "bar_time": "2026-01-01T00:00:00Z",
                "order_id": f"b{next(self.bar)}",
            }
        ).encode()

    def wait_done(self, ids: list[int], timeout: float = 180) -> None:
        from signals.models import Signal

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Signal.objects.filter(pk__in=ids, status__in=Signal.PENDING_STATUSES).exists():
                return
            time.sleep(0.1)
        raise SystemExit("signals did not finish in time")

    def outcomes(self, answers: list[dict]) -> dict:
        """Per accepted alert that placed an order: alert → order out and alert → fill known (ms)."""
        from django.db.models import Count

        from execution.engine.plan import client_order_id_for
        from execution.models import Order
        from signals.models import Signal

        ids = [a["signal_id"] for a in answers if a.get("signal_id")]
        self.wait_done(ids)
        seen = creates(self.emu_url)
        fills = dict(Order.objects.filter(signal_id__in=ids, leg=1).values_list("signal_id", "first_fill_at"))
        out, fill, skipped = [], [], 0
        for a in answers:
            sid = a.get("signal_id")
            at = seen.get(client_order_id_for(signal_id=sid, leg=1)) if sid else None
            if at is None:
                skipped += 1
                continue
            out.append((at - a["sent_wall"]) * 1000)
            if fills.get(sid):
                fill.append((fills[sid].timestamp() - a["sent_wall"]) * 1000)
        statuses = dict(
            Signal.objects.filter(pk__in=ids).values("status").annotate(n=Count("id")).values_list("status", "n")
        )
        return {"out": out, "fill": fill, "no_order": skipped, "statuses": statuses}

    # shapes

    def cold_start(self, stack: Stack) -> dict:
        """Start the stack; the moment /health answers 200, send an alert; then a few more."""
        started = stack.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.health, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.HTTPError, OSError):
                pass
            if stack.proc.poll() is not None:
                raise SystemExit(f"the stack exited while starting (see {LOG_DIR}/stack-{stack.label}.log)")
            time.sleep(0.01)
        else:
            raise SystemExit("/health did not turn 200 within 240 s")
        healthy = time.time()
        # Markets 21–23 are the cold start's own (entries only), 24 the one-market shape's:
        # every strategy shares the account, and the venue nets its position per market, so a
        # strategy closing with reduce-only orders must not share its market with another.
        first = post_sequential(self.web, [self.alert(self.cold, self.markets[21])])
        later = []
        for i in range(1, 9):
            time.sleep(0.25)
            later += post_sequential(self.web, [self.alert(self.cold, self.markets[21 + i % 3])])
        result = self.outcomes(first + later)
        out = result["out"]
        return {
            "health_200_after_start_s": round(healthy - started, 1),
            "first_alert_out_ms": round(out[0], 1) if out else None,
            "later_alerts_out_p50_ms": round(statistics.median(out[1:]), 1) if len(out) > 1 else None,
        }

    def one_market(self) -> dict:
        """Back to back on one market: buy, buy (a second entry), then repeated pairs of
        close + entry the other way and a second entry."""
        own = self.markets[24]
        cycle = ["close_long", "sell", "sell", "close_short", "buy", "buy"]
        actions = ["buy", "buy"] + [cycle[i % len(cycle)] for i in range(self.args.one_market - 2)]
        answers = post_sequential(self.web, [self.alert(self.one, own, a) for a in actions])
        r = self.outcomes(answers)
        return self._latency(r) | {"alerts": len(actions), "no_order": r["no_order"], "statuses": r["statuses"]}

    def many_markets(self) -> dict:
        markets = self.markets[:21]
        bodies = [self.alert(self.many, markets[i % 21]) for i in range(self.args.many_markets)]
        r = self.outcomes(post_sequential(self.web, bodies))
        return self._latency(r) | {"alerts": len(bodies), "no_order": r["no_order"]}

    def burst21(self) -> dict:
        emu_call(
            self.emu_url,
            "/__emulator/faults",
            {"action": "latency_ms", "endpoint": "create_order", "ms": 800, "count": None},
        )
        try:
            answers = burst_post(self.web, [self.alert(self.slow, m) for m in self.markets[:21]])
            r = self.outcomes(answers)
        finally:
            emu_call(self.emu_url, "/__emulator/faults", method="DELETE")
        return {
            "out_p50_ms": round(percentile(r["out"], 50), 1),
            "out_max_ms": round(max(r["out"]), 1),
            "orders": len(r["out"]),
        }

    def burst200(self) -> dict:
        bodies = [self.alert(s, m) for s in self.crowd for m in self.markets[:4]]
        answers = burst_post(self.web, bodies)
        acks = [a["latency_ms"] for a in answers]
        accepted = [a for a in answers if a.get("status") == "accepted"]
        r = self.outcomes(accepted)
        cids = set(creates(self.emu_url))
        from execution.engine.plan import client_order_id_for

        ours = {client_order_id_for(signal_id=a["signal_id"], leg=1) for a in accepted}
        booked = [o for o in emu_call(self.emu_url, "/__emulator/orders") if o["client_order_id"] in ours]
        return {
            "accepted": len(accepted),
            "ack_p50_ms": round(percentile(acks, 50), 1),
            "ack_max_ms": round(max(acks), 1),
            "out_p50_ms": round(percentile(r["out"], 50), 1),
            "out_max_ms": round(max(r["out"]), 1),
            "orders_out": len(ours & cids),
            "booked": len(booked),
            "doubled": len(booked) - len({o["client_order_id"] for o in booked}),
        }

    # fan-out (issue 15) and protect (issue 14): markets 25–29 of the emulator, no other
    # shape's (every strategy shares one position per market at the venue).

    @staticmethod
    def spare_markets() -> list:
        from emulator.markets import default_markets

        return default_markets()[25:]

    def _fan_out_strategy(self) -> tuple[str, list[int]]:
        """The strategy `fan` subscribed on FAN_OUT_ACCOUNTS accounts of the emulator (each its
        own row and rate bucket, one API key), made once: the subscriptions' ids."""
        from decimal import Decimal

        from execution.models import ExchangeAccount
        from strategies.models import Strategy, Subscription
        from strategies.subscriptions import subscriptions_sync

        strategy = Strategy.objects.filter(strategy_id="fan").first()
        if strategy is None:
            accounts = []
            for i in range(FAN_OUT_ACCOUNTS):
                account = ExchangeAccount(
                    label=f"bench-fan-{i}",
                    exchange=self.args.exchange,
                    mode="testnet",
                    market_type="linear",
                    base_url=self.emu_url,
                    max_orders_per_second=Decimal("1000"),
                )
                account.set_credentials(
                    api_key=KEY,
                    api_secret=SECRET,
                    api_password=PASSPHRASE if self.args.exchange in ("bitget", "okx") else None,
                )
                account.save()
                accounts.append(account)
            strategy = Strategy.objects.create(
                strategy_id="fan", account=accounts[0], sizing_mode="fixed_quote", size_value=Decimal("100")
            )
            for account in accounts:
                Subscription.objects.get_or_create(strategy=strategy, account=account)
            subscriptions_sync(strategy=strategy)
        subs = list(Subscription.objects.filter(strategy=strategy, enabled=True).values_list("pk", flat=True))
        return strategy.strategy_id, subs

    def _fanned_out(self, parent_id: int, timeout: float = 60) -> str:
        """Wait for the alert's signal and every child of it to finish; its status."""
        from signals.models import Signal

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = Signal.objects.filter(pk=parent_id).values_list("status", flat=True).first()
            # The children are written before the parent is finished: once it is, all exist.
            if (
                status not in Signal.PENDING_STATUSES
                and not Signal.objects.filter(parent_id=parent_id, status__in=Signal.PENDING_STATUSES).exists()
            ):
                return status
            time.sleep(0.02)
        raise SystemExit(f"fan-out: signal {parent_id} and its children did not finish in {timeout} s")

    def fan_out(self) -> dict:
        """One alert to FAN_OUT_ACCOUNTS subscriptions, one alert at a time (each sent once the
        previous one is done on every account: the spread of one fan-out, not a backlog). Per
        alert: the spread between the first and the last account's create at the exchange,
        and alert → first / last create. Issue 15's target: the spread's p50 ≤ 15 ms."""
        from execution.engine.plan import client_order_id_for
        from signals.models import Signal

        key, subs = self._fan_out_strategy()
        market = self.spare_markets()[0]
        # Warm-up: each new account loads its markets and opens its client on first use.
        [warm] = post_sequential(self.web, [self.alert(key, market)])
        if self._fanned_out(warm["signal_id"]) != Signal.Status.FANNED_OUT:
            return {"skipped": "this stack does not fan an alert out (no subscriptions in its code)"}
        answers = []
        for _ in range(FAN_OUT_ALERTS):
            [answer] = post_sequential(self.web, [self.alert(key, market)])
            answers.append(answer)
            self._fanned_out(answer["signal_id"])
        seen = creates(self.emu_url)
        spreads, firsts, lasts = [], [], []
        for a in answers:
            times = [seen.get(client_order_id_for(signal_id=a["signal_id"], leg=1, subscription_id=s)) for s in subs]
            if None in times:
                continue
            spreads.append((max(times) - min(times)) * 1000)
            firsts.append((min(times) - a["sent_wall"]) * 1000)
            lasts.append((max(times) - a["sent_wall"]) * 1000)
        return {
            "accounts": len(subs),
            "alerts": len(answers),
            "complete": len(spreads),
            "spread_p50_ms": round(percentile(spreads, 50), 1),
            "spread_p95_ms": round(percentile(spreads, 95), 1),
            "first_out_p50_ms": round(percentile(firsts, 50), 1),
            "last_out_p50_ms": round(percentile(lasts, 50), 1),
        }

    def protect(self) -> dict:
        """Entries on a strategy with a 2 % stop-loss and a 4 % take-profit, one alert every
        0.2 s over four markets: alert → entry at the exchange, and entry fill known (the app
        recorded it) → stop-loss at the exchange. Issue 14's target: the stop live within
        50 ms of the fill being known."""
        from decimal import Decimal

        from execution.exchanges.ccxt_gateway import CcxtGateway
        from execution.models import Order
        from strategies.models import Strategy

        if self.args.exchange not in CcxtGateway.PROTECTIVE_VENUES:
            return {"skipped": f"protective orders are not wired for {self.args.exchange}"}
        key = "protect"
        Strategy.objects.get_or_create(
            strategy_id=key,
            defaults=dict(
                account=self.account,
                sizing_mode="fixed_quote",
                size_value=Decimal("100"),
                stop_loss_percent=Decimal("2"),
                take_profit_percent=Decimal("4"),
            ),
        )
        markets = self.spare_markets()[1:5]
        bodies = [self.alert(key, markets[i % len(markets)]) for i in range(PROTECT_ALERTS)]
        answers = post_sequential(self.web, bodies, pause=0.2)
        r = self.outcomes(answers)
        ids = [a["signal_id"] for a in answers if a.get("signal_id")]
        stops = Order.objects.filter(signal_id__in=ids, protection=Order.Protection.STOP_LOSS, generation=1)
        deadline = time.monotonic() + 30
        while stops.filter(status__in=(Order.Status.PENDING, Order.Status.SUBMITTING)).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seen = creates(self.emu_url)
        known = dict(
            Order.objects.filter(signal_id__in=ids, protection="", first_fill_at__isnull=False).values_list(
                "pk", "first_fill_at"
            )
        )
        to_stop, live = [], 0
        for entry_id, cid, status in stops.values_list("protects_id", "client_order_id", "status"):
            live += status == Order.Status.OPEN
            if cid in seen and entry_id in known:
                to_stop.append((seen[cid] - known[entry_id].timestamp()) * 1000)
        return self._latency(r) | {
            "alerts": len(bodies),
            "no_order": r["no_order"],
            "stops_live": live,
            "fill_to_stop_p50_ms": round(percentile(to_stop, 50), 1),
            "fill_to_stop_p99_ms": round(percentile(to_stop, 99), 1),
            "fill_to_stop_max_ms": round(max(to_stop), 1) if to_stop else None,
        }

    def rate_limit(self) -> dict:
        from decimal import Decimal

        from execution.models import ExchangeAccount

        ExchangeAccount.objects.filter(pk=self.account.pk).update(max_orders_per_second=Decimal(RATE_LIMIT))
        emu_call(self.emu_url, "/__emulator/requests", method="DELETE")
        spinners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(os.cpu_count() or 2)
        ]
        try:
            time.sleep(0.5)
            bodies = [self.alert(s, m) for s in self.limited for m in self.markets[:3]]
            answers = burst_post(self.web, bodies)
            ids = [a["signal_id"] for a in answers if a.get("status") == "accepted"]
            self.wait_done(ids, timeout=240)
        finally:
            stop_processes(spinners)
            ExchangeAccount.objects.filter(pk=self.account.pk).update(max_orders_per_second=Decimal("1000"))
        times = sorted(creates(self.emu_url).values())
        worst = max((sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)), default=0)
        return {
            "limit_per_s": RATE_LIMIT,
            "orders": len(times),
            "max_creates_in_any_second": worst,
            "span_s": round(times[-1] - times[0], 1) if times else None,
        }

    @staticmethod
    def _latency(r: dict) -> dict:
        return {
            "out_p50_ms": round(percentile(r["out"], 50), 1),
            "out_p99_ms": round(percentile(r["out"], 99), 1),
            "fill_known_p50_ms": round(percentile(r["fill"], 50), 1),
        }


def one_run(bench: Bench, stack: Stack, pg: Postgres, shapes: list[str], profile: bool = False) -> dict:
    res: dict[str, object] = {}
    meter = CpuMeter(stack, pg)
    profiles: dict[str, dict] = {}
    profiler = Profiler(stack, stack.label) if profile else None

    def spy(shape: str, fn):
        if profiler is None:
            return fn()
        profiler.start(shape)
        try:
            return fn()
        finally:
            profiles[shape] = profiler.stop()

    if "cold-start" in shapes:
        res["cold-start"] = bench.cold_start(stack)
    else:
        stack.start()
        wait_http(bench.health, timeout=240)
    time.sleep(1.0)  # a moment at rest
    res["rest"] = {
        "pg_connections": len(pg.backends()),
        "rss_mb": round(memory_mb(stack.pids())[0]),
        "pss_mb": round(memory_mb(stack.pids())[1]),
    }
    sequential_cpu, sequential_alerts = 0.0, 0
    for shape, fn in (("one-market", bench.one_market), ("many-markets", bench.many_markets)):
        if shape in shapes:
            meter.start()
            res[shape] = spy(shape, fn)
            cpu = meter.stop()
            res[shape]["cpu_ms_per_alert"] = round(sum(cpu.values()) * 1000 / res[shape]["alerts"], 1)
            sequential_cpu += sum(cpu.values())
            sequential_alerts += res[shape]["alerts"]
    if "burst21" in shapes:
        res["burst21"] = spy("burst21", bench.burst21)
    if "burst200" in shapes:
        meter.start()
        res["burst200"] = spy("burst200", bench.burst200)
        cpu = meter.stop()
        res["burst200"]["cpu_ms_per_alert"] = round(sum(cpu.values()) * 1000 / 200, 1)
        res["burst200"]["cpu_s_by_process"] = cpu
    if "fan-out" in shapes:
        res["fan-out"] = spy("fan-out", bench.fan_out)
    if "protect" in shapes:
        res["protect"] = spy("protect", bench.protect)
    if "rate-limit" in shapes:
        res["rate-limit"] = spy("rate-limit", bench.rate_limit)
    rss, pss = memory_mb(stack.pids())
    res["after"] = {"pg_connections": len(pg.backends()), "rss_mb": round(rss), "pss_mb": round(pss)}
    if profiles:
        res["profiles"] = profiles
    if sequential_alerts:
        res["cpu_ms_per_alert_sequential"] = round(sequential_cpu * 1000 / sequential_alerts, 1)
    return res


ROWS = [
    ("cold-start", "health_200_after_start_s", "cold start: /health 200 after start, s"),
    ("cold-start", "first_alert_out_ms", "cold start: first alert → order out, ms"),
    ("cold-start", "later_alerts_out_p50_ms", "cold start: next 8 alerts → order out p50, ms"),
    ("one-market", "out_p50_ms", "one market back to back: order out p50, ms"),
    ("one-market", "out_p99_ms", "one market back to back: order out p99, ms"),
    ("one-market", "fill_known_p50_ms", "one market back to back: fill known p50, ms"),
    ("one-market", "cpu_ms_per_alert", "one market: stack CPU per alert, ms"),
    ("many-markets", "out_p50_ms", "21 markets in turn: order out p50, ms"),
    ("many-markets", "out_p99_ms", "21 markets in turn: order out p99, ms"),
    ("many-markets", "fill_known_p50_ms", "21 markets in turn: fill known p50, ms"),
    ("many-markets", "cpu_ms_per_alert", "21 markets: stack CPU per alert, ms"),
    ("burst21", "out_p50_ms", "21 at once, exchange 0.8 s: order out p50, ms"),
    ("burst21", "out_max_ms", "21 at once, exchange 0.8 s: order out max, ms"),
    ("burst200", "ack_p50_ms", "50 strategies × 4 at once: answer p50, ms"),
    ("burst200", "ack_max_ms", "50 × 4: last answer, ms"),
    ("burst200", "out_p50_ms", "50 × 4: order out p50, ms"),
    ("burst200", "out_max_ms", "50 × 4: order out max, ms"),
    ("burst200", "orders_out", "50 × 4: orders out (of 200)"),
    ("burst200", "doubled", "50 × 4: orders doubled"),
    ("burst200", "cpu_ms_per_alert", "50 × 4: stack CPU per alert, ms"),
    ("fan-out", "skipped", "fan-out"),
    ("fan-out", "spread_p50_ms", f"fan-out to {FAN_OUT_ACCOUNTS}: first → last account's order p50, ms"),
    ("fan-out", "spread_p95_ms", f"fan-out to {FAN_OUT_ACCOUNTS}: first → last account's order p95, ms"),
    ("fan-out", "first_out_p50_ms", "fan-out: alert → first account's order p50, ms"),
    ("fan-out", "last_out_p50_ms", "fan-out: alert → last account's order p50, ms"),
    ("protect", "skipped", "protect"),
    ("protect", "out_p50_ms", "protect: alert → entry out p50, ms"),
    ("protect", "out_p99_ms", "protect: alert → entry out p99, ms"),
    ("protect", "fill_to_stop_p50_ms", "protect: entry fill known → stop-loss out p50, ms"),
    ("protect", "fill_to_stop_p99_ms", "protect: entry fill known → stop-loss out p99, ms"),
    ("protect", "stops_live", f"protect: stop-losses live (of {PROTECT_ALERTS})"),
    ("rate-limit", "max_creates_in_any_second", f"rate limit {RATE_LIMIT}/s, CPU saturated: most creates in 1 s"),
    ("rate-limit", "span_s", "rate limit: first → last create, s (60 orders)"),
    (None, "cpu_ms_per_alert_sequential", "stack CPU per alert, sequential shapes, ms"),
    ("rest", "pg_connections", "PostgreSQL connections at rest"),
    ("after", "pg_connections", "PostgreSQL connections after the shapes"),
    ("rest", "rss_mb", "stack RSS at rest, MB"),
    ("after", "rss_mb", "stack RSS after the bursts, MB"),
    ("after", "pss_mb", "stack PSS after the bursts, MB"),
]


def table(runs: list[dict]) -> list[str]:
    lines = []
    header = f"{'':58}" + "".join(f"{'run ' + str(i + 1):>10}" for i in range(len(runs)))
    lines.append(header + (f"{'median':>10}" if len(runs) > 1 else ""))
    for group, key, label in ROWS:
        values = [(r.get(group, {}) if group else r).get(key) for r in runs]
        if all(v is None for v in values):
            continue
        if isinstance(values[0], str):
            lines.append(f"{label:58}{values[0]}")
            continue
        cells = "".join(f"{v:>10}" if v is not None else f"{'-':>10}" for v in values)
        numbers = [v for v in values if isinstance(v, (int, float))]
        med = f"{statistics.median(numbers):>10}" if len(runs) > 1 and numbers else ""
        lines.append(f"{label:58}{cells}{med}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of: {', '.join(SHAPES)}")
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a freshly started stack")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--code", default=str(BASE_DIR), help="checkout whose stack to run (default: this one)")
    parser.add_argument("--label", default="", help="a name for this stack in the output and logs")
    parser.add_argument("--one-market", type=int, default=60, help="alerts in the one-market shape")
    parser.add_argument("--many-markets", type=int, default=105, help="alerts in the many-markets shape")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the worker and web workers during each shape (slower)"
    )
    parser.add_argument("--exchange", choices=("bybit", "bitget", "okx"), default="bybit", help="venue to emulate")
    args = parser.parse_args()
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes: {', '.join(sorted(unknown))}")
    code_dir = Path(args.code).resolve()
    label = args.label or ("this checkout" if code_dir == BASE_DIR else code_dir.name)

    env = prepare_environment("execution", redis_db=10)
    env.pop("LOG_LEVEL", None)  # the default stack logs as it does by default
    os.environ["LOG_LEVEL"] = "WARNING"  # this process only
    import django

    django.setup()
    from django.core.management import call_command

    procs: list[subprocess.Popen] = []
    stack: Stack | None = None
    try:
        emu_port, web_port = free_port(), free_port()
        emu_url = f"http://127.0.0.1:{emu_port}"
        procs.append(
            start_process(
                "emulator",
                [sys.executable, "-m", "emulator", "--port", str(emu_port), "--key", KEY, "--secret", SECRET]
                + ["--passphrase", PASSPHRASE, "--balance", "1000000000"],
                env,
            )
        )
        wait_http(emu_url + "/__emulator/health")
        call_command("migrate", verbosity=0)
        database = env["DATABASE_URL"].rsplit("/", 1)[1]
        bench = Bench(args, env, emu_url, web_port, database)
        pg = Postgres(database)
        stack = Stack(code_dir, web_port, env, label.replace(" ", "-"))
        runs = []
        for n in range(args.runs):
            print(
                f"run {n + 1}/{args.runs} ({label}; load average {os.getloadavg()[0]:.1f}; "
                f"PostgreSQL can open {pg.headroom()} more connections)",
                flush=True,
            )
            runs.append(one_run(bench, stack, pg, shapes, profile=args.profile))
            stack.stop()
            print(json.dumps(runs[-1]), flush=True)
        print(f"\n{label} — {args.exchange}, {os.cpu_count()} cores, load average now {os.getloadavg()[0]:.1f}")
        for line in table(runs):
            print(line)
        for shape, roles in runs[-1].get("profiles", {}).items():
            for role, prof in roles.items():
                print(f"\nprofile, {shape}, {role} ({prof['samples']} on-CPU samples):")
                print("  inclusive, our code: " + ", ".join(f"{k} {v}%" for k, v in prof["inclusive_ours_pct"].items()))
                print("  self:                " + ", ".join(f"{k} {v}%" for k, v in prof["self_pct"].items()))
        summary = {"label": label, "code": str(code_dir), "runs": runs}
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary))
        return 0
    finally:
        if stack is not None:
            stack.stop()
        stop_processes(procs)


if __name__ == "__main__":
    sys.exit(main())
