"""`make run`: bring the whole thing up on the embedded defaults and keep it in the
foreground. Migrates, creates the admin login and the paper `demo` strategy, starts Redis
if none answers, then gunicorn, a Celery worker and Celery beat. Ctrl-C stops them all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PY = sys.executable
# Pool threads send (a thread waits on the venue's reply to its create, nothing longer: fills
# are followed elsewhere), so 22 cover 21 alerts at once on a slow venue with one thread to
# spare. Each thread keeps a PostgreSQL connection: 22 + 4 followers + the web workers stay
# within 30 for the stack (docs/execution.md, "Worker pool").
WORKER_CONCURRENCY = "22"


def manage(*args: str) -> None:
    subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def _wait_until_answering(url: str, children: list, timeout: float = 90.0) -> str:
    """Wait until `url` gives any HTTP answer (503 too: the worker may still be starting, and
    alerts are recorded and queued meanwhile). Returns what went wrong, or "" when it answers."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in children:
            if proc.poll() is not None:
                return f"{name} exited with {proc.returncode} while starting"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return ""
        except urllib.error.HTTPError:
            return ""
        except OSError:
            time.sleep(0.2)
    return f"{url} did not answer within {timeout:.0f} s"


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")
    import django

    django.setup()
    from django.conf import settings

    from tvtrader.devservices import ensure_redis

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    var = settings.VAR_DIR
    children: list[tuple[str, subprocess.Popen]] = []

    def stop_all(*_: object) -> None:
        for _name, proc in reversed(children):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for _name, proc in children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    # SIGTERM (systemd, a supervisor, `kill`) stops everything as Ctrl-C does, from the start.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print("==> migrating the database", flush=True)
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        manage("bootstrap")

        redis_proc = ensure_redis(settings.REDIS_URL, var / "redis", daemonize=False)
        if redis_proc is not None:
            children.append(("redis", redis_proc))
            print(f"==> started an embedded Redis at {settings.REDIS_URL} (data in {var / 'redis'})", flush=True)

        def spawn(name: str, args: list[str]) -> None:
            proc = subprocess.Popen(args, cwd=BASE_DIR, start_new_session=True)
            children.append((name, proc))

        bin_dir = Path(PY).parent
        # Prepare every pool thread at start-up (database connection, exchange client).
        os.environ.setdefault("WORKER_PREWARM", os.environ.get("WORKER_CONCURRENCY", WORKER_CONCURRENCY))
        spawn(
            "gunicorn",
            [
                str(bin_dir / "gunicorn"),
                "tvtrader.wsgi",
                "-c",
                str(BASE_DIR / "deploy" / "gunicorn.conf.py"),
                "--bind",
                f"{host}:{port}",
            ],
        )
        spawn(
            "worker",
            [
                str(bin_dir / "celery"),
                "-A",
                "tvtrader",
                "worker",
                "-P",
                "threads",
                "-c",
                os.environ.get("WORKER_CONCURRENCY", WORKER_CONCURRENCY),
                "-Q",
                "orders,default,notifications",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
                "-n",
                "tvtrader@%h",
            ],
        )
        spawn(
            "beat",
            [
                str(bin_dir / "celery"),
                "-A",
                "tvtrader",
                "beat",
                "-l",
                "warning",
                "-s",
                str(var / "celerybeat-schedule"),
            ],
        )

        shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        base = f"http://{shown_host}:{port}"
        # Print the curl only once the webhook answers: an alert pasted a moment too early
        # would be refused before anything could record it.
        problem = _wait_until_answering(f"{base}/health", children)
        if problem:
            print(f"==> {problem}; stopping everything", flush=True)
            return 1
        login = (var / "admin_password").read_text().strip() if (var / "admin_password").exists() else "(unchanged)"
        alert = {
            "passphrase": settings.WEBHOOK_PASSPHRASE,
            "action": "buy",
            "ticker": "BTCUSDT.P",
            "exchange": "BYBIT",
            "price": 65000,
            "volume": 0.01,
            "strategy_id": "demo",
        }
        print(
            "\n"
            f"  tvtrader is up (paper trading).\n"
            f"  Admin:       {base}/admin/   login: admin / {login}\n"
            f"  Webhook URL: {base}/tv-webhook\n"
            f"  Passphrase:  {settings.WEBHOOK_PASSPHRASE}\n"
            f"  Health:      {base}/health\n\n"
            f"  Fire a test alert:\n"
            f"  curl -s -X POST {base}/tv-webhook -H 'Content-Type: text/plain' -d {shlex.quote(json.dumps(alert))}\n\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"==> {name} exited with {proc.returncode}; stopping everything", flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\n==> stopping", flush=True)
        return 0
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
