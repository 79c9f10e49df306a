"""Shared fixtures: a real Celery worker process on the test database, alert builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_intake_budgets():
    """The webhook's per-minute budgets (stored garbage, throttled refusal logs) are per
    process; each test starts with a fresh minute so tests do not depend on each other."""
    from signals import services

    for budget in (services._rejection_log,):
        budget.minute, budget.count, budget.suppressed = 0, 0, 0


def alert_body(**overrides) -> dict:
    body = {
        "passphrase": settings.WEBHOOK_PASSPHRASE,
        "action": "buy",
        "ticker": "BTCUSDT.P",
        "exchange": "BYBIT",
        "price": 65000.5,
        "volume": 0.01,
        "strategy_id": "demo",
        "timeframe": "15",
        "bar_time": "2026-11-24T02:00:00Z",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


@pytest.fixture
def post_alert(client):
    """POST an alert the way TradingView does (JSON body; text/plain by default)."""

    def _post(content_type: str = "text/plain", raw: str | bytes | None = None, **overrides):
        data = raw if raw is not None else json.dumps(alert_body(**overrides))
        return client.post("/tv-webhook", data=data, content_type=content_type)

    return _post


def test_database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


class WorkerProcess:
    """A real `celery worker` subprocess consuming the test broker and test database."""

    def __init__(self, env: dict[str, str], log_path: Path, concurrency: int = 32, queues: str = "orders,default"):
        self.env = env
        self.log_path = log_path
        self.concurrency = concurrency
        self.queues = queues
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
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
                str(self.concurrency),
                "-Q",
                self.queues,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
                "-n",
                f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if b"ready." in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError("celery worker did not become ready in 30 s")

    def kill(self, sig: int = 9) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, *needles: str, timeout: float = 10.0) -> str:
        """Wait until every needle is in the worker's log. A log line is written after the
        effect a test observes (a message delivered, a row committed), so it can trail it."""
        wait_for(lambda: all(n in self.log() for n in needles), timeout=timeout, message=f"{needles} in the worker log")
        return self.log()


@pytest.fixture
def worker_factory(transactional_db, tmp_path):
    """Start real Celery workers against the test database; they are stopped afterwards."""
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    started: list[WorkerProcess] = []

    def _start(**kwargs) -> WorkerProcess:
        env = dict(os.environ)
        env["DATABASE_URL"] = test_database_url()
        env["REDIS_URL"] = settings.REDIS_URL
        env["REDIS_NAMESPACE"] = settings.REDIS_NAMESPACE
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
        env["TVTRADER_VAR_DIR"] = str(settings.VAR_DIR)
        env["WEBHOOK_PASSPHRASE"] = settings.WEBHOOK_PASSPHRASE
        env["CREDENTIALS_ENCRYPTION_KEYS"] = ",".join(settings.CREDENTIALS_ENCRYPTION_KEYS)
        env.update(kwargs.pop("env", {}))
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", **kwargs)
        worker.start()
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        worker.stop()
    connection.close()


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
