"""`make run` as a newcomer uses it: on the embedded defaults (SQLite, paper), the curl it
prints works the moment it is printed and trades on paper; SIGTERM stops everything."""

from __future__ import annotations

import os
import re
import signal
import socket
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


def test_make_run_prints_a_curl_that_works_at_once_and_sigterm_stops_everything(tmp_path):
    redis_url = re.sub(r"/\d+$", "", settings.REDIS_URL) + "/13"
    redis.Redis.from_url(redis_url).flushdb()
    port = _free_port()
    marker = f"TVTRADER_VAR_DIR={tmp_path / 'var'}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TVTRADER_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "WORKER_CONCURRENCY": "4",
    }
    out = tmp_path / "run.log"
    with open(out, "wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "tvtrader.launcher"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(timeout=60)
    assert code == 0
    assert "==> stopping" in out.read_text()
    deadline = time.monotonic() + 10
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == [], "nothing left running"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the port is free again"
