"""`make run`: bring the whole thing up on the embedded defaults and keep it in the
foreground. Checks the database and Redis (starting Redis if none answers), migrates, creates
the admin login and the paper `demo` strategy, then starts gunicorn, a trial-sized Celery
worker and Celery beat, and prints the banner once everything answers: the banner is the last
thing on the screen until something happens. Ctrl-C stops them all.

Like systemd does for the deployed units, it restarts a process that dies once everything
is up (a worker killed by its broker's connection dying, an OOM kill), and it holds the web
listening socket itself, so alerts sent while gunicorn restarts wait instead of being refused.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
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
TRIAL_WORKER_CONCURRENCY = WORKER_CONCURRENCY


LATER_LOGIN = "admin (password set at first run; `manage.py changepassword admin` to reset)"


class StartupProblem(Exception):
    """Something the user must fix before `make run` can start, said in one line."""


def manage(*args: str) -> None:
    done = subprocess.run([PY, str(BASE_DIR / "manage.py"), *args], check=False, cwd=BASE_DIR)
    if done.returncode != 0:
        raise StartupProblem(f"`manage.py {' '.join(args)}` failed (its output is above)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _check_database() -> None:
    """One line naming DATABASE_URL when the database cannot be reached, not a traceback."""
    from django.db import connection

    from tvtrader.devservices import shown_url

    try:
        connection.ensure_connection()
    except Exception as exc:
        where = os.environ.get("DATABASE_URL")
        shown = f"DATABASE_URL={shown_url(where)}" if where else f"the SQLite file {connection.settings_dict['NAME']}"
        raise StartupProblem(
            f"cannot reach the database at {shown}: {_first_line(exc)} (start it, or fix DATABASE_URL)"
        ) from None
    finally:
        connection.close()


def _first_password(var: Path) -> str | None:
    """The first admin's password while it has not been shown yet: `bootstrap` leaves it in
    var/admin_password, which the launcher deletes once the banner has shown it."""
    from django.contrib.auth import get_user_model

    path = var / "admin_password"
    if not path.exists():
        return None
    password = path.read_text().strip()
    admin = get_user_model().objects.filter(username="admin").first()
    if admin is None or not admin.check_password(password):
        return None  # changed since (a file left by an older version)
    return password


def _wait_until_ready(base: str, children: list, timeout: float = 120.0) -> str:
    """Wait until the web server answers and a warm worker reports itself (the health
    report, read here rather than through /health, which would log each 503 while the
    worker starts as an ERROR). Returns what went wrong, or "" once ready."""
    import urllib.error
    import urllib.request

    from django.db import connection

    from signals.selectors import health_report

    deadline = time.monotonic() + timeout
    web_up = worker_up = False
    while time.monotonic() < deadline:
        for name, proc in children:
            if proc.poll() is not None:
                return f"{name} exited with {proc.returncode} while starting"
        if not web_up:
            try:
                # A GET the webhook refuses (405) without logging or touching anything.
                urllib.request.urlopen(f"{base}/tv-webhook", timeout=2).close()
                web_up = True
            except urllib.error.HTTPError:
                web_up = True
            except OSError:
                pass
        if not worker_up:
            worker_up = health_report()["ok"]
            connection.close()
        if web_up and worker_up:
            return ""
        time.sleep(0.2)
    waiting_for = "the web server" if not web_up else "a warm worker"
    return f"{waiting_for} did not come up within {timeout:.0f} s"


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tvtrader.settings")
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except (ImproperlyConfigured, ValueError) as exc:
        # A malformed setting (DATABASE_URL with an unknown scheme, LOG_FORMAT…) names itself.
        print(f"==> configuration error: {_first_line(exc)}", file=sys.stderr, flush=True)
        return 2
    from django.conf import settings

    from tvtrader.devservices import ensure_redis, shown_url

    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    var = settings.VAR_DIR
    children: list[tuple[str, subprocess.Popen]] = []
    started_at: dict[str, float] = {}

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
        _check_database()
        redis_proc = ensure_redis(settings.REDIS_URL, var / "redis", daemonize=False)
        if redis_proc is not None:
            children.append(("redis", redis_proc))
            started_at["redis"] = time.monotonic()
            print(
                f"==> started a Redis of its own at {shown_url(settings.REDIS_URL)} (data in {var / 'redis'})",
                flush=True,
            )
        print("==> migrating the database", flush=True)
        manage("migrate", "--noinput", "-v", "0")
        manage("collectstatic", "--noinput", "-v", "0")
        manage("bootstrap", "-v", "0")

        # The web socket is ours: gunicorn serves on it (fd://) and a restarted gunicorn
        # takes it over; meanwhile the kernel queues connections instead of refusing them.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, int(port)), family=family, backlog=2048)
        commands: dict[str, list[str]] = {}

        def spawn(name: str, args: list[str]) -> None:
            commands[name] = args
            pass_fds = (listener.fileno(),) if name == "gunicorn" else ()
            proc = subprocess.Popen(args, cwd=BASE_DIR, start_new_session=True, pass_fds=pass_fds)
            children[:] = [(n, p) for n, p in children if n != name] + [(name, proc)]
            started_at[name] = time.monotonic()

        print("==> starting the web server, the worker and the scheduler", flush=True)
        if os.geteuid() == 0:
            # Celery's eight-line warning about root, said once and in proportion: a trial on a
            # fresh VPS often runs as root; deploy/install.sh runs every service as `tvtrader`.
            print(
                "==> running as root: fine for a trial; deploy/install.sh runs them as a user of their own", flush=True
            )
            os.environ["PYTHONWARNINGS"] = "ignore:You're running the worker with superuser privileges"
        bin_dir = Path(PY).parent
        concurrency = os.environ.get("WORKER_CONCURRENCY", TRIAL_WORKER_CONCURRENCY)
        # Prepare every pool thread at start-up (database connection, exchange client).
        os.environ.setdefault("WORKER_PREWARM", concurrency)
        spawn(
            "gunicorn",
            [
                str(bin_dir / "gunicorn"),
                "tvtrader.wsgi",
                "-c",
                str(BASE_DIR / "deploy" / "gunicorn.conf.py"),
                "--bind",
                f"fd://{listener.fileno()}",
            ],
        )
        spawn(
            "worker",
            [
                str(bin_dir / "celery"),
                "--quiet",  # no start-up banner: ours is the one to read
                "-A",
                "tvtrader",
                "worker",
                "-P",
                "threads",
                "-c",
                concurrency,
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
                "--quiet",
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
        # Print the curl only once the webhook answers and the worker is warm: an alert pasted
        # a moment too early would be refused, or wait, and the worker's start-up lines would
        # scroll the banner away.
        problem = _wait_until_ready(base, children)
        if problem:
            print(f"==> {problem}; stopping everything", flush=True)
            return 1
        password = _first_password(var)
        login = f"admin / {password}   (shown this once: note it now)" if password else LATER_LOGIN
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
            f"  Admin:       {base}/admin/   login: {login}\n"
            f"  Webhook URL: {base}/tv-webhook\n"
            f"  Passphrase:  {settings.WEBHOOK_PASSPHRASE}\n"
            f"  Health:      {base}/health\n\n"
            f"  Fire a test alert:\n"
            f"  curl -s -X POST {base}/tv-webhook -H 'Content-Type: text/plain' -d {shlex.quote(json.dumps(alert))}\n\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        (var / "admin_password").unlink(missing_ok=True)
        restart_at: dict[str, float] = {}
        failures: dict[str, int] = {}
        while True:
            now = time.monotonic()
            for name, proc in list(children):
                if proc.poll() is None or name not in commands and name != "redis":
                    continue
                if name not in restart_at:
                    # Quick deaths in a row back off (1, 2, 4 … 30 s); a long run resets that.
                    quick = now - started_at.get(name, 0.0) < 30
                    failures[name] = failures.get(name, 0) + 1 if quick else 1
                    delay = min(2 ** (failures[name] - 1), 30)
                    restart_at[name] = now + delay
                    print(f"==> {name} exited with {proc.returncode}; restarting it in {delay} s", flush=True)
                elif now >= restart_at[name]:
                    del restart_at[name]
                    if name == "redis":
                        redis_proc = ensure_redis(settings.REDIS_URL, var / "redis", daemonize=False)
                        children[:] = [(n, p) for n, p in children if n != "redis"]
                        if redis_proc is not None:
                            children.append(("redis", redis_proc))
                            started_at["redis"] = time.monotonic()
                    else:
                        spawn(name, commands[name])
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\n==> stopping", flush=True)
        return 0
    except (StartupProblem, SystemExit) as exc:
        # One line naming what to fix; SystemExit carries devservices' (REDIS_URL) messages.
        message = exc.code if isinstance(exc, SystemExit) else str(exc)
        if isinstance(message, str):
            print(f"==> {message}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
