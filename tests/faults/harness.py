"""The fault harness: the whole install as real processes, a stream of alerts, one fault (or
all of them) in the middle, and the invariants checked once everything settles.

A `World` is: PostgreSQL behind a TCP proxy that refuses, resets or blackholes; a private
redis-server that is killed and restarted empty; gunicorn on a held listening socket (as
systemd's socket unit holds it) that is SIGKILLed and restarted; a Celery worker that is
SIGKILLed and restarted; Celery beat (the sweeper); the exchange emulator with its fault
injection. `run_scenario` streams alerts on two strategies and three markets (with
duplicates), applies the scenario's fault, waits until every accepted alert is final, and
checks what a trader relies on (see `Report.violations`).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from django.db import connection

from emulator import ExchangeEmulator
from execution.models import ExchangeAccount, Order, Position
from signals.models import Signal
from tests.conftest import WorkerProcess, alert_body, test_database_url
from tests.factories import StrategyFactory
from tests.processes import GunicornProcess, PrivateRedis, TcpProxy, app_env, http_post

BASE_DIR = Path(__file__).resolve().parent.parent.parent
ANSWER_LIMIT_SECONDS = 3.0  # TradingView's patience
VOLUMES = {"BTCUSDT.P": "0.001", "ETHUSDT.P": "0.01", "SOLUSDT.P": "0.1"}
STRATEGIES = {"fa": ("fa-key", "fa-secret"), "fb": ("fb-key", "fb-secret")}
# Short exchange timeouts and lease so a scenario settles in seconds (production defaults:
# 10 s, 5 s, 60 s).
WORKER_ENV = {
    "EXCHANGE_TIMEOUT_SECONDS": "1.5",
    "ORDER_NOT_FOUND_GRACE_SECONDS": "1",
    "ORDER_NOT_FOUND_GRACE_REUSABLE_ID_SECONDS": "2",
    "SIGNAL_LEASE_SECONDS": "6",
    # The production default is 10 s; FAULTS_REQUEUE_AFTER_SECONDS=10 measures with it.
    "SIGNAL_REQUEUE_AFTER_SECONDS": os.environ.get("FAULTS_REQUEUE_AFTER_SECONDS", "2"),
    "WORKER_HEARTBEAT_MAX_AGE_SECONDS": "20",
}


class BeatProcess:
    """Celery beat (the sweeper's clock)."""

    def __init__(self, env: dict[str, str], log_path: Path, schedule: Path):
        self.env, self.log_path, self.schedule = env, log_path, schedule
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tvtrader", "beat", "-l", "warning", "-s", str(self.schedule)],
            cwd=BASE_DIR,
            env=self.env,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)


class World:
    """One install under test, every part a real process (or, for the exchange, a real HTTP
    server in this process)."""

    def __init__(self, tmp: Path, *, web_workers: int = 2, worker_concurrency: int = 16):
        self.tmp = tmp
        self.runs = 0
        self.worker_log_before = ""  # what earlier worker processes logged
        self.emu = ExchangeEmulator(accounts=dict(STRATEGIES.values()))
        self.emu.__enter__()
        self.accounts: dict[str, ExchangeAccount] = {}
        for strategy_id, (key, secret) in STRATEGIES.items():
            account = ExchangeAccount(
                label=f"emu-{strategy_id}",
                exchange="bybit",
                mode=ExchangeAccount.Mode.TESTNET,
                market_type="linear",
                base_url=self.emu.url,
            )
            account.set_credentials(api_key=key, api_secret=secret)
            account.save()
            self.accounts[strategy_id] = account
            StrategyFactory(strategy_id=strategy_id, account=account)
        db = connection.settings_dict
        self.db_proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
        self.redis = PrivateRedis(tmp / "redis")
        self.redis.start()
        proxied = test_database_url().replace(f":{db['PORT'] or 5432}/", f":{self.db_proxy.port}/")
        self.env = app_env(
            DATABASE_URL=proxied,
            REDIS_URL=self.redis.url,
            CELERY_BROKER_URL=self.redis.url,
            **WORKER_ENV,
        )
        self.web = GunicornProcess(self.env, tmp / "gunicorn.log", workers=web_workers, held_socket=True)
        self.worker = WorkerProcess(self.env, tmp / "worker.log", concurrency=worker_concurrency)
        self.beat = BeatProcess(self.env, tmp / "beat.log", tmp / "beat-schedule")
        self.web.start()
        self.worker.start()
        self.beat.start()

    def close(self) -> None:
        for part in (self.beat, self.worker, self.web):
            try:
                part.stop()
            except Exception:  # noqa: BLE001 (tear everything down whatever failed)
                pass
        self.redis.stop()
        self.db_proxy.close()
        self.emu.__exit__(None, None, None)
        connection.close()

    def worker_events(self, event: str) -> int:
        """How often any worker process so far logged `event=<event>`."""
        needle = f"event={event} "
        return self.worker_log_before.count(needle) + self.worker.log().count(needle)

    # -- faults --------------------------------------------------------------------------
    def worker_restart(self, down: float = 1.0) -> None:
        self.worker.kill()
        time.sleep(down)
        self.worker_log_before += self.worker.log()
        self.worker.log_path.write_bytes(b"")  # `ready.` of the new process, not the old one
        self.worker.start()

    def web_restart(self, down: float = 1.0) -> None:
        self.web.kill()
        time.sleep(down)
        self.web.start()

    def redis_restart_empty(self, down: float = 2.0) -> None:
        self.redis.proc.kill()  # SIGKILL: an OOM kill; started again with nothing in it
        self.redis.proc.wait(timeout=10)
        time.sleep(down)
        self.redis.start()


@dataclass
class Answer:
    key: tuple[str, str]  # (strategy, market)
    seq: int  # position in the stream of this (strategy, market)
    sent_at: float
    status: int | str
    body: dict
    took: float


@dataclass
class Report:
    scenario: str
    alerts: int = 0
    answers: list[Answer] = field(default_factory=list)
    fault_started: float = 0.0
    fault_ended: float = 0.0
    settled_at: float | None = None
    violations: list[str] = field(default_factory=list)
    creates: int = 0
    flagged: int = 0
    elapsed: float = 0.0
    requeues: int = 0
    not_claimed: int = 0
    last_sent: float = 0.0

    @property
    def recovery_seconds(self) -> float | None:
        if self.settled_at is None:
            return None
        return max(0.0, self.settled_at - self.fault_ended)

    def row(self) -> dict[str, str]:
        took = sorted(a.took for a in self.answers)
        during = sorted(a.took for a in self.answers if self.fault_started <= a.sent_at <= self.fault_ended + 0.5)
        statuses: dict[str, int] = defaultdict(int)
        for a in self.answers:
            statuses[str(a.status)] += 1

        def p99(values: list[float]) -> str:
            return f"{values[min(len(values) - 1, int(len(values) * 0.99))]:.2f}" if values else "-"

        return {
            "scenario": self.scenario,
            "alerts": str(self.alerts),
            "answers": " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
            "answer p99 s (during fault)": f"{p99(took)} ({p99(during)})",
            "answer max s": f"{max(took):.2f}" if took else "-",
            "creates": str(self.creates),
            "re-queues / not claimed": f"{self.requeues} / {self.not_claimed}",
            "flagged": str(self.flagged),
            "all final s after fault (after last alert)": "never"
            if self.settled_at is None
            else f"{self.recovery_seconds:.1f} ({max(0.0, self.settled_at - self.last_sent):.1f})",
            "invariants": "ok" if not self.violations else f"{len(self.violations)} broken",
        }


def _stream(
    world: World, report: Report, *, alerts: int, rate: float, duplicates: float, seed: int, offset: int
) -> None:
    """Send `alerts` alerts at `rate` a second, round-robin over 2 strategies × 3 markets
    (so one market of one strategy gets one every 6/rate s), some sent twice."""
    rng = random.Random(seed)
    keys = [(s, t) for s in STRATEGIES for t in VOLUMES]
    counters: dict[tuple[str, str], int] = defaultdict(int)
    threads = []
    lock = threading.Lock()
    start = time.monotonic()
    for n in range(alerts):
        key = keys[n % len(keys)]
        seq = counters[key]
        counters[key] += 1
        action = "buy" if seq % 2 == 0 else "sell"
        bar_n = offset + seq  # one bar per alert: no two alerts of a run, or of two runs, are one
        bar = f"2026-{1 + bar_n // 40000:02d}-{1 + (bar_n // 1440) % 27:02d}T{(bar_n // 60) % 24:02d}:{bar_n % 60:02d}:00Z"
        body = json.dumps(
            alert_body(strategy_id=key[0], ticker=key[1], action=action, volume=VOLUMES[key[1]], bar_time=bar)
        ).encode()
        copies = 2 if rng.random() < duplicates else 1
        for _ in range(copies):

            def post(key=key, seq=seq, body=body):
                sent = time.monotonic()
                try:
                    status, answer, took = http_post(world.web.url + "/tv-webhook", body, timeout=10)
                except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut mid-answer
                    status, answer, took = type(exc).__name__, {}, time.monotonic() - sent
                with lock:
                    report.answers.append(Answer(key, seq, sent, status, answer, took))

            thread = threading.Thread(target=post, daemon=True)
            thread.start()
            threads.append(thread)
        time.sleep(max(0.0, start + (n + 1) / rate - time.monotonic()))
    for thread in threads:
        thread.join(timeout=30)


def run_scenario(
    world: World,
    name: str,
    fault: Callable[[World], None] | None,
    *,
    alerts: int = 60,
    rate: float = 15.0,
    fault_at: float = 0.3,
    duplicates: float = 0.1,
    settle_timeout: float = 90.0,
    seed: int = 1,
    answer_limit: float | None = ANSWER_LIMIT_SECONDS,
) -> Report:
    report = Report(scenario=name, alerts=alerts)
    booked_before = len(world.emu.orders(venue="bybit"))
    churn_before = (world.worker_events("signal_requeued"), world.worker_events("signal_not_claimed"))
    world.runs += 1
    kwargs = {"alerts": alerts, "rate": rate, "duplicates": duplicates, "seed": seed, "offset": world.runs * 2000}
    streaming = threading.Thread(target=_stream, args=(world, report), kwargs=kwargs)
    started = time.monotonic()
    streaming.start()
    time.sleep(alerts / rate * fault_at)
    report.fault_started = time.monotonic()
    if fault is not None:
        fault(world)
    report.fault_ended = time.monotonic()
    streaming.join()
    report.last_sent = max((a.sent_at for a in report.answers), default=report.fault_ended)
    report.settled_at = _settle(report, settle_timeout)
    _check(world, report, answer_limit)
    report.creates = len(world.emu.orders(venue="bybit")) - booked_before
    report.requeues = world.worker_events("signal_requeued") - churn_before[0]
    report.not_claimed = world.worker_events("signal_not_claimed") - churn_before[1]
    report.elapsed = time.monotonic() - started
    return report


def _accepted_ids(report: Report) -> set[int]:
    return {
        a.body["signal_id"]
        for a in report.answers
        if a.status in (200, 202) and a.body.get("status") in ("accepted", "duplicate")
    }


def _settle(report: Report, timeout: float) -> float | None:
    """When every accepted (or duplicate) alert had reached a final state, or None."""
    ids = _accepted_ids(report)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = Signal.objects.filter(pk__in=ids).exclude(status__in=Signal.TERMINAL_STATUSES).count()
        if not pending:
            return time.monotonic()
        time.sleep(0.2)
    return None


def _check(world: World, report: Report, answer_limit: float | None) -> None:
    v = report.violations
    ids = _accepted_ids(report)
    # 1. Every accepted/duplicate alert is final.
    open_ = list(
        Signal.objects.filter(pk__in=ids).exclude(status__in=Signal.TERMINAL_STATUSES).values_list("pk", "status")
    )
    if open_:
        v.append(f"{len(open_)} accepted alerts not final: {open_[:5]}")
    # 2. Every answer within TradingView's 3 s, and an answer it is (a 503 counts; refused
    # does not). While no web process runs at all (it is restarting), alerts wait for the
    # next one: answered, not refused, is the bar there (`answer_limit=None`).
    slow = [a for a in report.answers if answer_limit is not None and a.took > answer_limit]
    if slow:
        v.append(f"{len(slow)} answers slower than {answer_limit} s (max {max(a.took for a in slow):.2f} s)")
    unanswered = [a for a in report.answers if not isinstance(a.status, int)]
    if answer_limit is None:
        # The web process killed outright: a request it was in the middle of is cut (nothing
        # can answer it); every other one must wait for the restart, never be refused.
        cut = ("RemoteDisconnected", "ConnectionResetError", "IncompleteRead")
        unanswered = [a for a in unanswered if a.status not in cut]
    if unanswered:
        v.append(f"{len(unanswered)} requests got no HTTP answer: {sorted({a.status for a in unanswered})}")
    errors = [a for a in report.answers if isinstance(a.status, int) and a.status not in (200, 202, 503)]
    if errors:
        v.append(f"{len(errors)} answers neither accepted, duplicate nor 503: {sorted({a.status for a in errors})}")
    # 3. No client order id created twice; 4. no order at the exchange without a signal.
    booked = world.emu.orders(venue="bybit")
    counts: dict[str, int] = defaultdict(int)
    for order in booked:
        counts[order.client_order_id] += 1
    doubled = [c for c, n in counts.items() if n > 1]
    if doubled:
        v.append(f"{len(doubled)} client order ids created twice: {doubled[:5]}")
    ours = {
        o["client_order_id"]: o
        for o in Order.objects.filter(client_order_id__in=list(counts)).values(
            "client_order_id", "signal_id", "signal__received_at", "strategy__strategy_id", "symbol"
        )
    }
    orphans = [c for c in counts if c not in ours]
    if orphans:
        v.append(f"{len(orphans)} exchange orders without a signal: {orphans[:5]}")
    # 5. Creates per (strategy, market) in the order the alerts arrived.
    by_market: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for order in booked:  # booking order
        mine = ours.get(order.client_order_id)
        if mine:
            by_market[(mine["strategy__strategy_id"], mine["symbol"])].append(
                (mine["signal__received_at"], mine["signal_id"])
            )
    # Judged twice: by the arrival the install recorded, and by the order this harness sent
    # them in (each market's alerts leave ~0.5 s apart), so a wrong arrival stamp is caught too.
    sent_seq = {a.body["signal_id"]: a.seq for a in report.answers if a.body.get("status") == "accepted"}
    for key, seq in by_market.items():
        signals = _dedupe(seq)
        arrivals = [s for s, _ in signals]
        if arrivals != sorted(arrivals):
            v.append(f"{key}: creates out of arrival order")
        sent = [sent_seq[pk] for _, pk in signals if pk in sent_seq]
        if sent != sorted(sent):
            v.append(f"{key}: creates out of the order the alerts were sent in")
    # 6. Positions equal the exchange's, or the difference is flagged.
    report.flagged = (
        Signal.objects.filter(pk__in=ids, status=Signal.Status.FAILED).count()
        + Order.objects.filter(status=Order.Status.UNKNOWN).count()
    )
    for strategy_id, account in world.accounts.items():
        key = STRATEGIES[strategy_id][0]
        for ticker in VOLUMES:
            symbol = ticker[: -len("USDT.P")] + "/USDT:USDT"
            theirs = world.emu.position(ticker[:-2], account=key, venue="bybit").size
            row = Position.objects.filter(account=account, strategy__isnull=True, symbol=symbol).first()
            mine = row.qty if row else Decimal(0)
            if Decimal(theirs) != mine and not report.flagged:
                v.append(f"{strategy_id} {symbol}: position {mine} here, {theirs} at the exchange, unflagged")


def _dedupe(seq: list[tuple]) -> list[tuple]:
    """One entry per signal (a signal's legs are several creates), in first-create order."""
    seen, out = set(), []
    for item in seq:
        if item[1] not in seen:
            seen.add(item[1])
            out.append(item)
    return out


def format_table(rows: list[dict[str, str]]) -> str:
    """Markdown tables, one per shape of row (scenario runs, two installs, the backlog)."""
    tables: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        tables.setdefault(tuple(row), []).append(row)
    out = []
    for columns, group in tables.items():
        widths = {c: max(len(c), *(len(r[c]) for r in group)) for c in columns}
        out.append("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
        out.append("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
        out.extend("| " + " | ".join(r[c].ljust(widths[c]) for c in columns) + " |" for r in group)
        out.append("")
    return "\n".join(out)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


class SecondInstall:
    """Another install (its own database, `make run`'s paper `demo` strategy) on the same Redis
    database as `world`: a paper and a live checkout on one VPS."""

    def __init__(self, world: World):
        import psycopg

        db = connection.settings_dict
        self.name = f"{db['NAME']}_second"
        self.admin_url = test_database_url().rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
            admin.execute(f'CREATE DATABASE "{self.name}"')
        url = test_database_url().rsplit("/", 1)[0] + "/" + self.name
        self.env = {**world.env, "DATABASE_URL": url, "REDIS_NAMESPACE": ""}
        for command in (["migrate", "--noinput", "-v", "0"], ["bootstrap"]):
            subprocess.run(
                [sys.executable, "manage.py", *command], cwd=BASE_DIR, env=self.env, check=True, capture_output=True
            )
        self.url = url
        self.web = GunicornProcess(self.env, world.tmp / "second-gunicorn.log", workers=1)
        self.worker = WorkerProcess(self.env, world.tmp / "second-worker.log", concurrency=8)
        self.web.start()
        self.worker.start()

    def executed(self, ids: list[int]) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT count(*) FROM signals_signal WHERE id = ANY(%s) AND status = 'executed'", [ids]
            ).fetchone()[0]

    def close(self) -> None:
        import psycopg

        self.worker.stop()
        self.web.stop()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
