"""Shared plumbing for the benchmarks: a private database and Redis database, processes
started and stopped cleanly, and a small HTTP client that opens one TCP connection per
alert (as separate TradingView deliveries do)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = BASE_DIR / "var" / "bench"


def bench_database_url(benchmark: str) -> str:
    """The PostgreSQL database a benchmark owns: `bench_<benchmark>`, on TEST_DATABASE_URL's
    server, suffixed with that URL's database name when one is set (so two people sharing a
    server never share a benchmark database). BENCH_DATABASE_URL overrides it, but must
    still name a `bench_` database: a benchmark drops and recreates it."""
    explicit = os.environ.get("BENCH_DATABASE_URL")
    if explicit:
        url = explicit
    else:
        base = os.environ.get("TEST_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
        parts = urlsplit(base)
        own = parts.path.lstrip("/")
        name = f"bench_{benchmark}" + (f"_{own}" if own and own != "postgres" else "")
        url = parts._replace(path=f"/{name}").geturl()
    if not urlsplit(url).path.lstrip("/").startswith("bench_"):
        raise SystemExit(f"refusing to use {url} for a benchmark: its database name must start with bench_")
    return url


def recreate_bench_database(url: str) -> None:
    """Drop and recreate a benchmark's own database (and only that: the name starts with
    `bench_`, see bench_database_url). Its connections are ended first; they can only be a
    previous run of the same benchmark. Nothing else on the server is touched."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop {name}: not a benchmark database")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def bench_redis_url(default_db: int) -> str:
    """BENCH_REDIS_URL, else REDIS_URL (the caller's own Redis database), else `default_db`."""
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or f"redis://127.0.0.1:6379/{default_db}"


def prepare_environment(benchmark: str, *, redis_db: int) -> dict[str, str]:
    """Fresh PostgreSQL database (`bench_<benchmark>…`, see bench_database_url) and Redis
    database for a run; returns the environment the child processes use (also applied to
    this process before django.setup())."""
    import redis

    from tvtrader.devservices import ensure_postgres, ensure_redis

    url = bench_database_url(benchmark)
    pg_base = urlsplit(url)._replace(path="/postgres").geturl()
    if not ensure_postgres(pg_base):
        raise SystemExit("the benchmarks need PostgreSQL (production-like); none is installed here")
    redis_url = bench_redis_url(redis_db)
    ensure_redis(redis_url, BASE_DIR / "var" / "bench-redis", daemonize=True)
    redis.Redis.from_url(redis_url).flushdb()
    recreate_bench_database(url)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tvtrader.settings",
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        TVTRADER_VAR_DIR=str(LOG_DIR),
        WEBHOOK_PASSPHRASE="bench-passphrase-0123456789",
        LOG_LEVEL="WARNING",
    )
    os.environ.update(env)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(LOG_DIR / f"{name}.log", "wb")
    return subprocess.Popen(args, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_processes(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_http(url: str, timeout: float = 30, accept=(200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status in accept:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in accept:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {timeout} s (logs in {LOG_DIR})")


def rss_mb(pid: int) -> float:
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def _tree(pid: int) -> list[int]:
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    return pids


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class CpuSampler:
    """Samples the CPU seconds used by each group of processes (each with its children), by
    every PostgreSQL and Redis process (they serve others too: on a quiet machine that is
    noise) and by this process, every `interval` seconds in a thread, so a scenario can report
    what each used up to a moment found afterwards (e.g. the last order reaching the venue)."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.05):
        import threading

        self.interval = interval
        self.groups = groups
        self.named = {name: _pids_named(name) for name in ("postgres", "redis-server")}
        self.samples: list[tuple[float, dict]] = [(time.time(), self._snapshot())]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.time(), self._snapshot()))

    def _snapshot(self) -> dict:
        out = {name: sum(_cpu_of(p) for pid in pids for p in _tree(pid)) for name, pids in self.groups.items()}
        out.update({name: sum(_cpu_of(pid) for pid in pids) for name, pids in self.named.items()})
        t = os.times()
        out["benchmark client"] = t.user + t.system
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def used_until(self, wall: float) -> dict:
        """CPU seconds per process from the start to the first sample at or after `wall`."""
        later = [snap for at, snap in self.samples if at >= wall] or [self.samples[-1][1]]
        return cpu_delta(self.samples[0][1], later[0])


def cpu_delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _request(url: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def _one(url: str, body: bytes, start: asyncio.Event | None) -> dict:
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    if start is not None:
        await start.wait()
    sent_wall, t0 = time.time(), time.perf_counter()
    writer.write(_request(url, body))
    await writer.drain()
    raw = await reader.read()
    elapsed = (time.perf_counter() - t0) * 1000
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    try:
        answer = json.loads(payload)
    except ValueError:
        answer = {}
    answer.update(http_status=status, sent_wall=sent_wall, latency_ms=elapsed, done_wall=time.time())
    return answer


def burst_post(url: str, bodies: list[bytes]) -> list[dict]:
    """Open one connection per body, then send them all at once."""

    async def run():
        start = asyncio.Event()
        tasks = [asyncio.create_task(_one(url, body, start)) for body in bodies]
        await asyncio.sleep(0.2)  # let every connection open first
        start.set()
        return await asyncio.gather(*tasks)

    return asyncio.run(run())


def post_sequential(url: str, bodies: list[bytes], pause: float = 0.0) -> list[dict]:
    async def run():
        out = []
        for body in bodies:
            out.append(await _one(url, body, None))
            if pause:
                await asyncio.sleep(pause)
        return out

    return asyncio.run(run())
